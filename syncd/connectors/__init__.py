"""One module per remote system: its URLs, models, pagination and error mapping.

Each connector module also defines its `[connectors.<name>]` section model, a
`syncd.sections.ConnectorConfig` naming its `client` and its `options_model` (what
check-config validates `connectors.<name>.options` against). A connector is declared
once, as a field of `syncd.config.Connectors` typed by that model; `syncd.config.CONNECTORS`
is read off those fields. Connectors import `syncd.sections`, never `syncd.config`.
"""
