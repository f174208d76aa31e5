"""The demo city: a generated map with its roster, for a district trying civicgrid before its own
map is drawn, training, ``make run``, the end-to-end tests and the benchmarks (docs/adr/0800)."""
