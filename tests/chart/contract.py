"""The images' contract, parsed from images/README.md (the one place it is written)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "images" / "README.md"
# Section titles of images/README.md -> chart component names.
SECTIONS = {"PostgreSQL": "postgresql", "SFTP": "sftp", "MLflow": "mlflow"}
ROW = re.compile(r"^\|\s*`(?P<name>[^`]+)`\s*\|(?P<rest>.*)\|\s*$")


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


def parse_contract(text: str | None = None) -> dict[str, ImageContract]:
    text = README.read_text() if text is None else text
    contracts = {component: ImageContract() for component in SECTIONS.values()}
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:].split("(")[0].strip()
            section = SECTIONS.get(title)
            continue
        if (
            line.startswith("| PostgreSQL |")
            or line.startswith("| SFTP |")
            or line.startswith("| MLflow |")
        ):
            cells = [c.strip(" `") for c in line.strip("|").split("|")]
            contract = contracts[SECTIONS[cells[0]]]
            contract.port = int(cells[2].split("/")[0])
            contract.volume = "" if cells[3] == "none" else cells[3]
            continue
        match = ROW.match(line)
        if section is None or match is None:
            continue
        name, cells = match["name"], [c.strip() for c in match["rest"].split("|")]
        if name.startswith("/"):
            contracts[section].paths[name] = cells[0]
        elif re.fullmatch(r"[A-Z][A-Z0-9_]+", name):
            # Columns: default | secret | meaning. "mounted secret" paths are files, not values.
            contracts[section].variables[name] = cells[1] == "yes"
    return contracts
