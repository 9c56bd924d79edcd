"""`conveyor console` in a real browser: Debian's headless Chromium, driven by Selenium through
chromedriver, against the console script on LocalStack. What a person sees and does: the overview's
numbers of a seeded queue (filled in by the page's script), a redrive filtered from the page that
moves exactly the matching messages, and an action without the token refused with nothing changed."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from conveyor import metadata
from conveyor.localstack import free_port
from tests.e2e.services import STARTED, Proc, start_processor, stopped_at_the_end
from tests.localstack_fixtures import BIN, Queues, count, drain, wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "browser-test-console-token"  # noqa: S105 - a test token
SCREENSHOTS = os.environ.get("CONVEYOR_SCREENSHOTS")  # a folder: the docs' screenshots are taken from these pages

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("Debian's chromium and chromium-driver are not installed (make test installs them)",
                allow_module_level=True)  # fmt: skip


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def seed(sqs: SQSClient, queues: Queues, kinds: list[str]) -> None:
    for n, kind in enumerate(kinds):
        record = {"error_type": kind, "error_message": f"failed {n}", "source_queue": queues.url, "receive_count": 5,
                  "retries_exhausted": True, "dead_lettered_at": int(time.time() * 1000) - 120_000,
                  "original_message_id": str(uuid.uuid4())}  # fmt: skip
        sqs.send_message(
            QueueUrl=queues.dlq_url, MessageBody=json.dumps({"n": n, "kind": kind}),
            MessageAttributes={metadata.DEAD_LETTER: {"DataType": "String", "StringValue": json.dumps(record)}},
        )  # fmt: skip


def console(queues: Queues, tmp: Path, **extra: str) -> Proc:
    port = free_port()
    env = queues.env(CONVEYOR_CONSOLE_PORT=str(port), CONVEYOR_CONSOLE_TOKEN=TOKEN, **extra)
    return _console(env, port, tmp)


def _console(env: dict[str, str], port: int, tmp: Path) -> Proc:
    log = tmp / f"console-{port}.log"
    with log.open("ab") as out:
        process = subprocess.Popen([str(BIN / "conveyor"), "console"], env=env, stdout=out, stderr=out)
    proc = Proc(process, port, log)
    STARTED.append(proc)
    wait_for(lambda: proc.ready() or process.poll() is not None, 30, "conveyor console ready")
    assert process.poll() is None, log.read_text()[-2000:]
    return proc


def until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str, timeout: float = 30) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except WebDriverException as exc:
        raise AssertionError(f"{what}: not within {timeout:g} s ({driver.current_url})") from exc


def cell(driver: WebDriver, role: str, figure: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f'#queues tr[data-role="{role}"] [data-figure="{figure}"]').text)


def shot(driver: WebDriver, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, max(600, min(int(height) + 160, 1800)))  # the whole page, as the docs show it
        driver.save_screenshot(str(Path(SCREENSHOTS) / name))
        driver.set_window_size(1280, 900)


def test_the_overview_shows_the_seeded_queues_numbers(
    browser: WebDriver, queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    for n in range(3):
        sqs.send_message(QueueUrl=queues.url, MessageBody=json.dumps({"waiting": n}))
    seed(sqs, queues, ["builtins.ValueError"] * 4 + ["billing.CardDeclined"])
    with stopped_at_the_end(console(queues, tmp_path)) as proc:
        browser.get(proc.url + "/")
        until(browser, lambda d: cell(d, "queue", "visible") == "3", "the queue's 3 visible messages")
        assert cell(browser, "dlq", "visible") == "5"
        # the page's script refreshes it: a message more shows without a reload
        sqs.send_message(QueueUrl=queues.url, MessageBody="{}")
        until(browser, lambda d: cell(d, "queue", "visible") == "4", "the refreshed count", timeout=40)
        assert browser.find_elements(By.CSS_SELECTOR, "#chart polyline")  # the live chart drew its depth line
        browser.get(proc.url + "/dead-letters")
        rows = browser.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr[data-message-id]")
        assert sorted(r.get_attribute("data-error-type") or "" for r in rows) == [
            "billing.CardDeclined", *["builtins.ValueError"] * 4
        ]  # fmt: skip
        shot(browser, "console-dead-letters.png")


def test_the_overview_shows_the_processors_figures_from_their_metrics(
    browser: WebDriver, queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    with stopped_at_the_end(start_processor(queues, tmp_path, tmp_path / "record.db")) as processor:
        metrics = f"{processor.url}/metrics,http://127.0.0.1:{free_port()}/metrics"  # the second answers nothing
        with stopped_at_the_end(console(queues, tmp_path, CONVEYOR_CONSOLE_METRICS_URLS=metrics)) as proc:
            for n in range(6):
                sqs.send_message(QueueUrl=queues.url, MessageBody=json.dumps({"key": f"k{n}"}))
            browser.get(proc.url + "/")
            until(browser, lambda d: d.find_element(By.CSS_SELECTOR, '#processors [data-figure="handled"]').text == "6",
                  "the processor's 6 handled messages, refreshed by the page", timeout=60)  # fmt: skip
            concurrency = browser.find_element(By.CSS_SELECTOR, '#processors [data-figure="concurrency"]').text
            assert int(concurrency) >= 1
            assert (
                "unreachable" in browser.find_element(By.ID, "processors-title").find_element(By.XPATH, "..").text
            )  # the endpoint that does not answer is named, the other's figures still show
            shot(browser, "console-overview.png")


def sign_in(driver: WebDriver, base: str) -> None:
    driver.delete_all_cookies()
    driver.get(base + "/sign-in?next=/dead-letters")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    until(driver, lambda d: d.current_url.endswith("/dead-letters") and d.find_elements(By.LINK_TEXT, "Overview"),
          "the dead letters after signing in")  # fmt: skip


def test_a_redrive_filtered_on_the_page_moves_exactly_the_matching_messages(
    browser: WebDriver, queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    seed(sqs, queues, ["builtins.ValueError", "billing.CardDeclined", "builtins.ValueError", "builtins.KeyError"])
    with stopped_at_the_end(console(queues, tmp_path)) as proc:
        sign_in(browser, proc.url)
        field = browser.find_element(By.ID, "error_type")
        field.send_keys("ValueError")
        browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
        until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr[data-message-id]")) == 2,
              "the two ValueErrors listed")  # fmt: skip
        browser.find_element(By.CSS_SELECTOR, 'button[value="redrive-matching"]').click()
        until(browser, lambda d: d.find_elements(By.ID, "confirm"), "the confirmation")
        assert browser.find_element(By.CSS_SELECTOR, '[data-count="matching"]').text == "2"
        browser.find_element(By.ID, "confirm").click()
        until(browser, lambda d: d.find_element(By.ID, "action").get_attribute("data-state") == "done",
              "the action's page showing it done", timeout=60)  # fmt: skip
        assert browser.find_element(By.CSS_SELECTOR, '#action [data-count="moved"]').text == "2"
    moved = drain(sqs, queues.url, 2)
    assert sorted(json.loads(m["Body"])["n"] for m in moved) == [0, 2]
    left = drain(sqs, queues.dlq_url, 2)
    assert sorted(json.loads(m["Body"])["kind"] for m in left) == ["billing.CardDeclined", "builtins.KeyError"]


def test_an_action_without_the_token_is_refused_and_changes_nothing(
    browser: WebDriver, queues: Queues, sqs: SQSClient, tmp_path: Path
) -> None:
    seed(sqs, queues, ["builtins.ValueError", "builtins.KeyError"])
    with stopped_at_the_end(console(queues, tmp_path)) as proc:
        browser.delete_all_cookies()
        browser.get(proc.url + "/dead-letters")
        boxes = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#dead-letters input[name="id"]'), "the list")
        assert len(boxes) == 2
        browser.find_element(By.ID, "all").click()  # the page's script ticks every box
        assert all(box.is_selected() for box in boxes)
        browser.find_element(By.CSS_SELECTOR, 'button[value="delete-selected"]').click()
        problem = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-problem]"), "the refusal")
        assert problem[0].get_attribute("data-problem") == "sign-in-required"
        assert "401" in browser.find_element(By.TAG_NAME, "h1").text
    assert count(sqs, queues.dlq_url) == (2, 0)
