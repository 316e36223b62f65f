"""Search runtimes, precisions, settings and exact rewrites for the fastest verified artifact."""
