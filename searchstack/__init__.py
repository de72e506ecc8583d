"""The product-level glue: settings and the `shopsearch` command line."""
