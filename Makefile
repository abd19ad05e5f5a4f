# vitphase — the two commands of the README are `make book` and `make test`.
# Everything runs inside .venv, created on first use by scripts/bootstrap.sh.
PROFILE ?= default
VENV := .venv/bin
.PHONY: setup book chapters notebooks zoo lint test test-fast smoke-notebooks bench clean

setup:
	@bash scripts/bootstrap.sh

## book: the whole book on $(PROFILE) (default: the mini zoo on CPU) -> _build/html/index.html
book: setup zoo
	$(VENV)/vitphase book --profile $(PROFILE)

## zoo: make sure every zoo model of the default profile is there (trains what is missing; resumable)
zoo: setup
	@if [ "$(PROFILE)" = "default" ]; then $(VENV)/vitphase zoo ensure; fi

## notebooks: the .ipynb paired with every jupytext source, in build/notebooks/
notebooks: setup
	$(VENV)/vitphase notebooks

## lint: ruff with the settings of pyproject.toml
lint: setup
	$(VENV)/ruff check .

## test: lint, unit tests and the nbval regression of the smoke-profile chapters, with portable numerics
## (scripts/portable.sh: one code path per numeric library: CI's numbers do not depend on its host)
test: setup lint
	bash scripts/portable.sh $(VENV)/python -m pytest tests --nbval-lax --nbval-current-env -p no:cacheprovider --durations=15

## test-fast: the unit tests without the slow ones (nbval, browser, paper profile, torchrun)
test-fast: setup
	bash scripts/portable.sh $(VENV)/python -m pytest tests -m "not slow" --ignore=tests/notebooks -p no:cacheprovider --durations=10

## smoke-notebooks: re-record the smoke-profile chapters nbval compares against
smoke-notebooks: setup
	bash scripts/portable.sh $(VENV)/vitphase book --profile smoke --no-html --output tests/notebooks

bench: setup
	$(VENV)/vitphase bench

clean:
	rm -rf _build build book/chapters
