"""The model registry's API (`/api/models/`): what the console's model pages do, for scripts."""
