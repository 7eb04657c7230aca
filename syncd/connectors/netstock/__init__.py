"""Netstock Data Orchestrator: OAuth2 token, dataset import, audit log, generated orders.

This package alone knows Netstock's URLs, its envelope and its error messages:

- `settings`: `connectors.netstock` options, the model -> endpoint map, `config_notes`.
- `fields`: the document's field types per model; import lines checked against them.
- `errors`: the envelope's message classified into syncd's errors (`classify_failure`).
- `answers`: typed answers (dataset and model states, audit entries, popped order lines).
- `auth`: the OAuth2 token, cached and renewed (`NetstockAuth`).
- `client`: `NetstockClient`, the calls themselves.
"""
