"""The mirror tables, one owning module each: the only code that writes them.

Jobs and destinations read a mirror table as they like but change it only through its
owner's functions or `Change` values (see `syncd.state.plan`), so a reader of one module
sees every way a table's rows can change.
"""
