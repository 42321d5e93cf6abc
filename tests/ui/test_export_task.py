"""The export dialog's work, headless: which users a request covers and clear errors."""

from __future__ import annotations

import csv

import pytest

from dynllm_tui.jobs.export import ExportRequest, run_export
from storage.exports import ExportError
from tests.ui.conftest import TOP_USER


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))[1:]


def test_scopes(ui_workspace, tmp_path):
    count, path = run_export(ui_workspace, ExportRequest("recommendations", "all",
                                                          str(tmp_path / "all.csv"), k=2))
    assert count == 10 and path == tmp_path / "all.csv"
    count, _ = run_export(ui_workspace, ExportRequest("recommendations", "search",
                                                       str(tmp_path / "s.csv"), k=3,
                                                       search="EIRE"))
    assert count == 3 and {r[0] for r in _rows(tmp_path / "s.csv")} == {TOP_USER}
    count, _ = run_export(ui_workspace, ExportRequest("facets", "user", str(tmp_path / "f.csv"),
                                                       user=f" {TOP_USER} "))
    assert count == 95 and {r[0] for r in _rows(tmp_path / "f.csv")} == {TOP_USER}


def test_relative_path_is_under_the_working_folder(ui_workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, path = run_export(ui_workspace, ExportRequest("recommendations", "all", "r.csv"))
    assert path == tmp_path / "r.csv" and path.exists()


@pytest.mark.parametrize("request_, message", [
    (ExportRequest("recommendations", "user", "x.csv", user=""), "give the customer id"),
    (ExportRequest("recommendations", "search", "x.csv", search="zzz"), "no customer matches"),
    (ExportRequest("recommendations", "all", "x.csv", k=0), "k must be at least 1"),
    (ExportRequest("recommendations", "all", "  "), "give a file name"),
])
def test_bad_requests(ui_workspace, tmp_path, monkeypatch, request_, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExportError, match=message):
        run_export(ui_workspace, request_)
    assert not (tmp_path / "x.csv").exists()
