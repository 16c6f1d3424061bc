"""The models: the online chord policy (and its melody-agent mirror), the offline teacher, shared blocks."""
