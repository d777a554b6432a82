"""The images' contract as the chart tests use it: read from images/contract.yaml through
mlopskit.contract (no Markdown parsing), keyed by the chart's component names."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlopskit.contract import CHART_COMPONENTS, load_contract

# Chart component names -> image names of images/contract.yaml.
COMPONENTS = {component: image for image, component in CHART_COMPONENTS.items()}


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
        component: ImageContract(
            variables={s.name: s.is_secret for s in images[image].settings},
            paths={p["path"]: p["kind"] for p in images[image].paths},
            port=images[image].port,
            volume=images[image].volume,
        )
        for component, image in COMPONENTS.items()
    }
