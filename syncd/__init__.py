"""syncd: a warehouse-side sync daemon between the host (WMS/ERP) and remote systems."""

__version__ = "0.1.0"
