"""A trainer whose code imports a module that is not installed: it dies at
import, before it could write a failure file."""

import trainforge_tests_no_such_module  # noqa: F401

print("unreachable")
