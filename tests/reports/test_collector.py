"""The cyclic garbage collector is paused while a report is built and rendered
(`gateway.reports.collector`), and restored afterwards as it was found, also when reports
overlap in threads or one fails."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway import keyring
from gateway.bootstrap import open_application
from gateway.evidence.maintainer import Evidence, EvidenceSettings
from gateway.reports import collector, document, html, render, signing
from gateway.settings import Settings
from tests.reports.scenario import INVESTIGATOR, investigated_case


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:  # pragma: no cover - the test run's collector is on
        gc.disable()


def test_paused_inside_restored_after_even_on_error() -> None:
    gc.enable()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer report is not done yet
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector.paused():
        raise RuntimeError("a report failed")
    assert gc.isenabled()


def test_a_collector_switched_off_elsewhere_stays_off() -> None:
    gc.disable()
    with collector.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_reports_in_threads() -> None:
    gc.enable()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with collector.paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with collector.paused():
            second_in.set()
            first_out.wait(5)
            seen["after the first ended"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"after the first ended": False}
    assert gc.isenabled()


def test_a_report_is_built_and_rendered_with_it_paused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    application = open_application(settings)
    key = keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key")
    evidence = Evidence(application, key, EvidenceSettings())
    seen: dict[str, bool] = {}

    def spying(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def spy(*args: Any, **kwargs: Any) -> Any:
            seen[name] = gc.isenabled()
            return function(*args, **kwargs)

        return spy

    monkeypatch.setattr(document, "_case_section", spying("analyses", document._case_section))
    monkeypatch.setattr(
        document, "integrity_statement", spying("integrity", document.integrity_statement)
    )
    monkeypatch.setattr(render, "render_html", spying("page", html.render_html))
    monkeypatch.setattr(render, "sign_content", spying("signing", signing.sign_content))
    try:
        scenario = investigated_case(application)
        investigation = application.investigation(scenario.investigation_id)
        gc.enable()
        built = document.build_document(
            application, evidence, investigation, generated_by={"user": INVESTIGATOR}
        )
        assert gc.isenabled()
        signed = render.produce(built, "html", key, chromium="chromium")
        assert gc.isenabled()
    finally:
        evidence.close()
        application.close()
    assert signed.startswith(b"<!DOCTYPE html>")
    # Signing (and a PDF's printing) runs with the collector on again.
    assert seen == {"analyses": False, "integrity": False, "page": False, "signing": True}
