"""The CrossGuard policy pack that checks the program's own output at `pulumi preview`.

`checks.py` holds the rules as plain functions, `crossguard.py` adapts them to pulumi-policy,
`__main__.py` serves the pack to the Pulumi CLI. See README.md.
"""
