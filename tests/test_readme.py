"""The README's examples run as written."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_your_own_model_example_runs_as_written(tmp_path):
    section = readme_section("Your own model")
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 15
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Analysis(" in result.stdout
    assert (tmp_path / "my_vit_analysis" / "per_layer.csv").is_file()
    assert (tmp_path / "my_vit_analysis" / "attention_heads.csv").is_file()
    assert (tmp_path / "monitor.csv").is_file()
