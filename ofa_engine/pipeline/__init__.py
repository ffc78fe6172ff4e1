"""The specialize pipeline: search, extract, recalibrate BN, export and measure one subnet."""
