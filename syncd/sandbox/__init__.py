"""Faithful local simulators of the remote systems syncd talks to.

Each simulator is a real HTTP/1.1 server on loopback (see `base.SandboxServer`) holding an
in-memory model of the vendor's documented rules, with per-route fault injection, so the
contract tests, the benchmarks and `syncd demo` exercise the same code paths as production.
"""
