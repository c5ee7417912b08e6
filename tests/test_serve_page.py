"""The page of ``numrec serve`` in a real headless browser (Chromium through selenium).

Digits are drawn stroke by stroke on the canvas with pointer moves (a mouse, a pen and a
finger), and the page must show the class the network gives.  Skipped only where selenium,
Chromium or its driver is not installed (``pip install selenium``; on Debian
``apt-get install chromium chromium-driver``).

With ``NUMREC_SCREENSHOT=PATH`` set, the page is also saved as a PNG screenshot at PATH
after the seven is drawn (the picture in the documentation is made this way).
"""
import json
import math
import os
import shutil
import threading
import urllib.request

import numpy as np
import pytest

import numrec
from numrec import serve

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)")

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no Chromium and chromedriver on PATH (apt-get install chromium chromium-driver)")

#: Side of the drawing canvas, in CSS pixels.
PAD = 280

# Strokes in canvas pixels, as a person would draw them.
ONE = [[(150, 40), (146, 90), (141, 140), (137, 190), (133, 240)]]
SEVEN = [[(70, 50), (140, 48), (210, 50), (185, 100), (160, 150), (140, 195), (125, 245)]]
ZERO = [[(140 + 60 * math.sin(t), 140 - 95 * math.cos(t))
         for t in np.linspace(0, 2 * math.pi, 37)]]
FOUR = [[(110, 40), (90, 110), (80, 160), (200, 160)], [(170, 60), (170, 170), (168, 245)]]


@pytest.fixture(scope="module")
def page_url(mnist):
    """A server with the reference network after two epochs on all of MNIST's training set."""
    (x_train, y_train), _ = mnist
    model = numrec.mnist_mlp(seed=0)
    model.fit(x_train, y_train, epochs=2, batch_size=32, loss=numrec.MSE(),
              optimizer=numrec.SGD(lr=0.75), seed=0)
    server = serve.make_server(serve.Recogniser(model, "test model"), "127.0.0.1", 0,
                               quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must download nothing
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=800,700", "--hide-scrollbars",
                     "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, page_url):
    browser.get(page_url)
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "status").text.startswith("Draw a digit"))
    return browser


def draw(driver, strokes, kind=interaction.POINTER_MOUSE, *, release=True):
    """Draw ``strokes`` (lists of canvas points) with one pointer of ``kind``."""
    pad = driver.find_element(By.ID, "pad")
    pointer = PointerInput(kind, kind)
    actions = ActionBuilder(driver, mouse=pointer, duration=20)
    for index, stroke in enumerate(strokes):
        points = _densify(stroke)
        actions.pointer_action.move_to(pad, *_offset(points[0]))
        actions.pointer_action.pointer_down()
        for point in points[1:]:
            actions.pointer_action.move_to(pad, *_offset(point))
        if release or index < len(strokes) - 1:
            actions.pointer_action.pointer_up()
    actions.perform()


def _densify(stroke, step=12):
    """Points every ``step`` pixels along a polyline, as a hand's pointer reports them."""
    points = [stroke[0]]
    for (x0, y0), (x1, y1) in zip(stroke[:-1], stroke[1:]):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) // step))
        points += [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(1, n + 1)]
    return points


def _offset(point):
    """Selenium's pointer offsets are from the element's centre, in whole pixels."""
    return int(round(point[0] - PAD / 2)), int(round(point[1] - PAD / 2))


def answer_for_drawing(driver, timeout=20):
    """Wait until the shown answer is for the drawing as it is now; return the class shown."""
    pad = driver.find_element(By.ID, "pad")
    answer = driver.find_element(By.ID, "answer")
    try:
        WebDriverWait(driver, timeout).until(
            lambda d: pad.get_attribute("data-version") == answer.get_attribute("data-version")
            and int(answer.get_attribute("data-version")) > 0)
    except TimeoutException:
        pytest.fail(f"no answer for the drawing within {timeout} s; status: "
                    f"{driver.find_element(By.ID, 'status').text!r}")
    return driver.find_element(By.ID, "digit").text


def ask_server(url, png):
    request = urllib.request.Request(url + "predict", data=png,
                                     headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def canvas_png(driver):
    """The drawing canvas as PNG bytes, exactly as the page sends it."""
    import base64

    data = driver.execute_script(
        "return document.getElementById('pad').toDataURL('image/png');")
    return base64.b64decode(data.split(",", 1)[1])


@pytest.mark.parametrize("strokes, expected, kind", [
    (ONE, "1", interaction.POINTER_MOUSE),
    (SEVEN, "7", interaction.POINTER_TOUCH),
    (ZERO, "0", interaction.POINTER_PEN),
    (FOUR, "4", interaction.POINTER_MOUSE),
], ids=["one-mouse", "seven-finger", "zero-pen", "four-two-strokes"])
def test_the_page_recognises_a_drawn_digit(page, page_url, strokes, expected, kind):
    draw(page, strokes, kind)
    shown = answer_for_drawing(page)
    assert shown == expected
    # The page shows what the server answers for the canvas as drawn: the same class, the
    # bars' values and the 28 x 28 image the network saw.
    answer = ask_server(page_url, canvas_png(page))
    assert str(answer["class"]) == shown
    bars = page.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert [bar.get_attribute("data-digit") for bar in bars] == [str(k) for k in range(10)]
    best = page.find_elements(By.CSS_SELECTOR, "#bars .bar.best")
    assert [bar.get_attribute("data-digit") for bar in best] == [expected]
    values = [bar.find_element(By.CLASS_NAME, "value").text for bar in bars]
    assert values == [f"{100 * p:.1f} %" for p in answer["probabilities"]]
    seen = page.execute_script(
        "return Array.from(document.getElementById('seen').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0));")
    np.testing.assert_array_equal(np.array(seen).reshape(28, 28), np.array(answer["image"]))

    screenshot = os.environ.get("NUMREC_SCREENSHOT")
    if screenshot and expected == "7":
        page.find_element(By.TAG_NAME, "main").screenshot(screenshot)


def test_predictions_come_while_drawing(page):
    """The answer follows the pen before the stroke ends."""
    draw(page, ONE, release=False)
    try:
        assert answer_for_drawing(page) == "1"
    finally:
        lift = ActionBuilder(page, mouse=PointerInput(interaction.POINTER_MOUSE, "mouse"))
        lift.pointer_action.pointer_up()
        lift.perform()


def test_clear_empties_the_canvas_and_the_answer(page):
    draw(page, SEVEN)
    assert answer_for_drawing(page) == "7"
    page.find_element(By.ID, "clear").click()
    assert page.find_element(By.ID, "digit").text == ""
    assert page.find_elements(By.CSS_SELECTOR, "#bars .bar.best") == []
    white = page.execute_script(
        "const pad = document.getElementById('pad');"
        "return pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data"
        ".every(v => v === 255);")
    assert white
    draw(page, ONE)  # and the next drawing starts afresh
    assert answer_for_drawing(page) == "1"


def test_the_page_loads_nothing_from_elsewhere(page, page_url):
    resources = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    origin = page_url.rstrip("/")
    assert resources and all(name.startswith(origin) for name in resources)
    errors = [entry for entry in page.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
