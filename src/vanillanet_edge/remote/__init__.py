"""Run the latency and accuracy harnesses on other machines (over SSH) and bring results back."""
