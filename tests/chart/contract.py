"""The images' contract as the chart tests use it: read from images/contract.yaml through
mlopskit.contract (no Markdown parsing), keyed by image name, which is also the chart's component
name."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlopskit.contract import load_contract


@dataclass
class ImageContract:
    variables: dict[str, bool] = field(default_factory=dict)  # name -> secret?
    paths: dict[str, str] = field(default_factory=dict)  # path -> kind
    port: int = 0
    volume: str = ""

    def allowed_env(self) -> set[str]:
        """Every name a deploy target may set: the variables, plus NAME_FILE for secrets.

        Variables whose name already ends in _FILE are file paths by design.
        """
        names = set(self.variables)
        names |= {f"{n}_FILE" for n, secret in self.variables.items() if secret}
        return names


def parse_contract() -> dict[str, ImageContract]:
    images = load_contract().images
    return {
        name: ImageContract(
            variables={s.name: s.is_secret for s in image.settings},
            paths={p["path"]: p["kind"] for p in image.paths},
            port=image.port,
            volume=image.volume,
        )
        for name, image in images.items()
    }
