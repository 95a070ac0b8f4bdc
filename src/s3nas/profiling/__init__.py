"""Black-box search-space profiling (BBSSP, Zeng et al. 2020): rank candidate blocks, write a candidates entry."""
