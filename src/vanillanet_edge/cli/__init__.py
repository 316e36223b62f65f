"""The `vanillanet-edge` command line (main.py is the entry point): a thin layer over
vanillanet_edge.api, one module per command group. The top layer: nothing imports it."""
