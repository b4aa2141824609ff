"""Bundled models: Antimony sources (``*.ant``) and the SBML Level 3 Version 1 generated from them.

Read them with :mod:`sbml_met.models`; regenerate the SBML with ``python -m sbml_met.models``.
"""
