"""The `triage` console entry point: mounts the sub-apps of serving/ and training/.

Kept outside the domain core, which never imports either.
"""
