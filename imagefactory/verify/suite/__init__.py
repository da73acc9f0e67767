"""The testinfra suite `imagefactory test` runs against a variant's container.

It ships inside the package so installed users run the same checks as CI. `plugin` passes
the variant's facts in and collects one outcome per check; `test_image` holds the checks.
"""
