"""Stage 1, the matrix: reads variants.yaml (validating every field with file, line and
field in its errors) and turns it into a Matrix of Variant objects, the input of every later
stage."""
