"""Real benchmark datasets read in their native layouts (LFW, IJB-C, ...)."""
