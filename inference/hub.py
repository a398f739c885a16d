"""Fetch a model from a Hugging Face hub into the model root, pinned to one commit.

Where a hub is reachable, a version can be registered from a hub id: the files are
downloaded once, at registration, into the model root, and from then on the version is an
ordinary local directory with a manifest, verified before every load. Serving never touches
the network, and a hub repository that changes later cannot change a registered version.
"""

import shutil
from pathlib import Path

# Weight formats that unpickle (run code) when loaded; fetched only for versions allowed them.
_PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl"]
# Other frameworks' and runtimes' copies of the weights: transformers + torch never reads them.
_FOREIGN_PATTERNS = ["*.msgpack", "*.h5", "*.gguf", "*.onnx", "*.onnx_data", "*.ot", "*.tflite"]


class HubUnavailable(Exception):
    """The hub could not be reached, or refused the repository or revision."""


def hub_snapshot_fetch(*, repo_id: str, revision: str, directory: Path, allow_pickle_weights: bool) -> str:
    """Download `repo_id` at `revision` into `directory`; returns the commit it resolved to.

    The hub's token comes from its usual place (HF_TOKEN or the login cache), never from us.
    """
    import httpx
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    ignore = _FOREIGN_PATTERNS + ([] if allow_pickle_weights else _PICKLE_PATTERNS)
    try:
        # Resolve the revision first and download that commit: a branch that moves mid-download
        # cannot mix files of two commits.
        commit = HfApi().model_info(repo_id, revision=revision).sha
        if not commit:
            raise HubUnavailable(f"the hub did not say which commit {repo_id}@{revision} is")
        snapshot_download(repo_id=repo_id, revision=commit, local_dir=directory, ignore_patterns=ignore)
    except (HfHubHTTPError, LocalEntryNotFoundError, httpx.HTTPError, OSError) as error:
        raise HubUnavailable(f"could not fetch {repo_id}@{revision} from the hub: {error}") from error
    # The hub client's bookkeeping is not part of the model.
    shutil.rmtree(directory / ".cache", ignore_errors=True)
    return str(commit)
