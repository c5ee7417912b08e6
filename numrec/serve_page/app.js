// The page of `numrec serve`: draw on the canvas, and the server's network answers.
//
// Every change of the drawing raises `version` (kept in #pad's data-version); the
// drawing is sent as a PNG at most every THROTTLE_MS while drawing, and once more when a
// stroke ends; #answer's data-version tells which drawing the shown answer is for.
"use strict";

(() => {
  const LINE_WIDTH = 20;      // pixels of the 280 x 280 canvas
  const THROTTLE_MS = 100;    // at most one request this often while drawing
  const HEALTH_RETRY_MS = 1000;

  const pad = document.getElementById("pad");
  const ink = pad.getContext("2d");
  const answerBox = document.getElementById("answer");
  const digitBox = document.getElementById("digit");
  const barsBox = document.getElementById("bars");
  const statusBox = document.getElementById("status");
  const seen = document.getElementById("seen").getContext("2d");

  let version = 0;            // the drawing's version
  let clearedAt = 0;          // answers for drawings before this are stale
  let shownVersion = 0;       // the drawing the shown answer is for
  let inked = false;
  let ready = false;          // the model is loaded
  let inFlight = false;
  let timer = null;
  let lastSent = -Infinity;
  const lastPoint = new Map();  // pointerId -> the stroke's last point

  const bars = [];
  for (let k = 0; k < 10; k++) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.digit = String(k);
    const label = document.createElement("span");
    label.textContent = String(k);
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "value";
    row.append(label, track, value);
    barsBox.appendChild(row);
    bars.push({ row, fill, value });
  }

  function setStatus(text) {
    statusBox.textContent = text;
  }

  // --- drawing ------------------------------------------------------------------------

  function blank() {
    ink.fillStyle = "#fff";
    ink.fillRect(0, 0, pad.width, pad.height);
    ink.lineCap = "round";
    ink.lineJoin = "round";
    ink.lineWidth = LINE_WIDTH;
    ink.strokeStyle = "#000";
    ink.fillStyle = "#000";
  }

  function pointOf(event) {
    const box = pad.getBoundingClientRect();
    return {
      x: (event.clientX - box.left) * pad.width / box.width,
      y: (event.clientY - box.top) * pad.height / box.height,
    };
  }

  function dot(p) {
    ink.beginPath();
    ink.arc(p.x, p.y, LINE_WIDTH / 2, 0, 2 * Math.PI);
    ink.fill();
  }

  function segment(from, to) {
    ink.beginPath();
    ink.moveTo(from.x, from.y);
    ink.lineTo(to.x, to.y);
    ink.stroke();
  }

  function changed() {
    inked = true;
    version += 1;
    pad.dataset.version = String(version);
    schedule();
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    const p = pointOf(event);
    lastPoint.set(event.pointerId, p);
    dot(p);
    changed();
  });

  pad.addEventListener("pointermove", (event) => {
    if (!lastPoint.has(event.pointerId)) return;
    event.preventDefault();
    const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    let from = lastPoint.get(event.pointerId);
    for (const e of coalesced.length ? coalesced : [event]) {
      const to = pointOf(e);
      segment(from, to);
      from = to;
    }
    lastPoint.set(event.pointerId, from);
    changed();
  });

  function endStroke(event) {
    if (!lastPoint.delete(event.pointerId)) return;
    send();  // the finished stroke is answered at once
  }

  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("lostpointercapture", endStroke);

  function clear() {
    blank();
    inked = false;
    version += 1;
    clearedAt = version;
    shownVersion = version;
    pad.dataset.version = String(version);
    answerBox.dataset.version = String(version);
    showNothing();
    setStatus(ready ? "Draw a digit in the white square." : "Loading the model…");
  }

  document.getElementById("clear").addEventListener("click", clear);

  // --- asking the server ----------------------------------------------------------------

  function schedule() {
    if (timer !== null) return;
    const wait = Math.max(0, lastSent + THROTTLE_MS - performance.now());
    timer = setTimeout(send, wait);
  }

  function send() {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    if (!ready || !inked || inFlight || shownVersion === version) return;
    inFlight = true;
    lastSent = performance.now();
    const asked = version;
    pad.toBlob((png) => ask(png, asked), "image/png");
  }

  async function ask(png, asked) {
    try {
      const response = await fetch("predict", {
        method: "POST",
        headers: { "Content-Type": "image/png" },
        body: png,
      });
      const answer = await response.json();
      if (asked >= clearedAt && asked > shownVersion) {
        shownVersion = asked;
        if (response.ok) {
          show(answer);
          setStatus("");
        } else {
          showNothing();
          setStatus(answer.error || `error ${response.status}`);
        }
        answerBox.dataset.version = String(asked);
      }
    } catch (error) {
      setStatus("The server does not answer: is numrec serve still running?");
      ready = false;
      setTimeout(waitForModel, HEALTH_RETRY_MS);  // and the drawing goes once it is back
    } finally {
      inFlight = false;
      if (ready && inked && version !== shownVersion) schedule();
    }
  }

  // --- showing the answer ---------------------------------------------------------------

  function show(answer) {
    digitBox.textContent = String(answer.class);
    answer.probabilities.forEach((p, k) => {
      bars[k].fill.style.width = `${(100 * p).toFixed(1)}%`;
      bars[k].value.textContent = `${(100 * p).toFixed(1)} %`;
      bars[k].row.classList.toggle("best", k === answer.class);
    });
    const picture = seen.createImageData(28, 28);
    answer.image.forEach((row, y) => row.forEach((level, x) => {
      const at = 4 * (28 * y + x);
      picture.data[at] = picture.data[at + 1] = picture.data[at + 2] = level;
      picture.data[at + 3] = 255;
    }));
    seen.putImageData(picture, 0, 0);
  }

  function showNothing() {
    digitBox.textContent = "";
    for (const bar of bars) {
      bar.fill.style.width = "0";
      bar.value.textContent = "";
      bar.row.classList.remove("best");
    }
    seen.clearRect(0, 0, 28, 28);
  }

  async function waitForModel() {
    try {
      const response = await fetch("health", { cache: "no-store" });
      if (response.ok) {
        ready = true;
        setStatus(inked ? "" : "Draw a digit in the white square.");
        send();
        return;
      }
    } catch (error) {
      // not up yet: try again
    }
    setTimeout(waitForModel, HEALTH_RETRY_MS);
  }

  blank();
  showNothing();
  waitForModel();
})();
