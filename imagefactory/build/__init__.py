"""Stage 3, building: takes the BuildContexts of the selected variants, orders them by their
base images (schedule), builds or skips each through the engine and reports progress; its
output is one BuildResult per variant."""
