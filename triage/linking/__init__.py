"""Duplicate-case linking (重复信访): candidates → verifier → ranked links with reasons."""
