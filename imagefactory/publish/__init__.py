"""Stage 5, publishing: takes the variants whose TestResult passed, tags their BuiltImage for
a registry, pushes it with the user's credentials and records what was published."""
