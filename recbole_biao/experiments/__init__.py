"""Experiments in one command: baseline comparison (paper Tables 1-3), interval sweep (Figure 5) and the
analysis of learned weights (Figures 3-4, Appendix B)."""
