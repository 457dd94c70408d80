"""Read-only facts about the node. Nothing in this package changes the host."""
