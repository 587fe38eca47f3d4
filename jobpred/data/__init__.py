"""Career data: synthetic generation and adapters for public data sets."""
