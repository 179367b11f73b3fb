"""Mutation testing: ``./dev mutate`` runs ``python -m tests.mutation`` (see its docstring)."""
