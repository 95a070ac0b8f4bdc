"""Event-driven NPU simulator (pure Python; torch only in ``simulator.frontends``).

``simulate(graph, load_profile("midap"))`` -> :class:`Report` with per-layer and total cycles, traffic,
utilisation and roofline. Graphs are built with :class:`GraphBuilder` or a frontend.
"""

from .api import COST_MODEL_VERSION, SIMULATOR_VERSION, simulate
from .blocks import Block, BlockError, block_graph, parse_block, simulate_block
from .costs import UnsupportedOpError, graph_compute_cycles
from .engine import SimulationLimitError
from .graph import Graph, GraphBuilder, Layer
from .hardware import HardwareProfile, ProfileError, list_profiles, load_profile, unlimited_bandwidth
from .report import LayerReport, Report

__all__ = [
    "SIMULATOR_VERSION", "COST_MODEL_VERSION", "simulate", "load_profile", "list_profiles", "HardwareProfile", "Report",
    "LayerReport", "UnsupportedOpError", "SimulationLimitError", "ProfileError", "Graph", "GraphBuilder", "Layer",
    "graph_compute_cycles", "unlimited_bandwidth", "Block", "BlockError", "parse_block", "block_graph",
    "simulate_block",
]
