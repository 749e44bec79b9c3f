"""Take a saved classifier to another machine: the Python that loads it (the snippets the app shows after
Save), and an upload to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.runtime.hub import hub_unreachable_reason


def image_snippet(file_name: str, encoder_id: str) -> str:
    """Python that loads a saved image classifier file and classifies a photo with it."""
    return (f'import fewshot_demo as fsd   # pip install fewshot-demo (this app\'s package)\n\n'
            f'classifier = fsd.load("{file_name}")   # checks the file; loads the {encoder_id} backbone\n'
            'for prediction in classifier.predict(["photo.jpg"]):\n'
            '    print(prediction.label, prediction.probabilities)\n')


def text_snippet(file_name: str) -> str:
    """Python that loads a saved text classifier file and classifies texts with it."""
    return f'''import fewshot_demo as fsd   # pip install fewshot-demo (this app's package)

classifier = fsd.load("{file_name}")   # checks the file; the encoder it names is loaded for you
for prediction in classifier.predict(["a text to classify", "another one"]):
    print(prediction.label, prediction.probabilities)
'''


def push_to_hub(path: str | Path, repo_id: str, token: str | None = None) -> str:
    """Upload a saved classifier (or an exported ONNX file) to a Hugging Face Hub model repository.

    Offline, this answers at once: it checks that the Hub can be reached before the client's retries.

    Args:
        path: the file to upload.
        repo_id: "user/name" (created as a model repository if it does not exist).
        token: a write token; None uses the one saved by ``huggingface-cli login``.

    Returns:
        The file's URL on the Hub.

    Raises:
        UserInputError: for a malformed repository id, when the Hub cannot be reached, or when it refuses.
    """
    repo_id = (repo_id or "").strip()
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UserInputError(f"name the repository as user/name (got {repo_id!r})")
    reason = hub_unreachable_reason()
    if reason is not None:
        raise UserInputError(f"the Hugging Face Hub cannot be reached ({reason}); download the file instead and "
                         "upload it when you are online")

    api = HfApi(token=token or None)
    path = Path(path)
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        api.upload_file(path_or_fileobj=str(path), path_in_repo=path.name, repo_id=repo_id, repo_type="model",
                        commit_message=f"Add {path.name} from fewshot-demo")
    except HfHubHTTPError as error:
        raise UserInputError(f"the Hub refused the upload ({error}); check the token has write access") from None
    return f"https://huggingface.co/{repo_id}/blob/main/{path.name}"
