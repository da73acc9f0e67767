"""Result bundles: what a test run proves, in a form others can check and count."""
