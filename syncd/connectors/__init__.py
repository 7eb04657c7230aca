"""One module per remote system: its URLs, models, pagination and error mapping."""
