"""The label page's bridge to the drawing canvas: a tiny Streamlit component (no widget of its
own) that listens, in the browser, to what streamlit-drawable-canvas does not report:

- the wheel over the canvas (zoom in/out about the mouse),
- dragging with Alt held (pan; the canvas never sees that drag, so no box is drawn),
- which box a click selects in the canvas's edit mode (hit-tested against the boxes' canvas
  rectangles the page passes in `data`, topmost first, as Fabric.js does),
- the + and - keys (zoom about the middle of the view),
- it makes the canvas send a box at once when the mouse is released (the canvas itself
  waits 200 ms), and before any key pressed soon after, so a key (N, S, Ctrl+Enter) pressed
  right after drawing acts on the box just drawn,
- a click on the overview picture beside the canvas (centre the view there),
- a crosshair following the mouse over the canvas,
- a drag made right after N on the canvas of the image left behind (still on the page for a
  moment under the next image's header), or on a canvas that has not loaded its boxes yet
  (it would ignore the drag), is held and replayed on the next image's canvas once it is ready.

It sends each as a trigger (`zoom`, `pan`, `select`, `center`) that the page turns into a new
view or selection. Keys are not handled here: they are Streamlit button shortcuts on the page.
"""
from __future__ import annotations

import streamlit as st

_JS = r"""
export default function (component) {
  const bridge = window.__boxwiseBridge || (window.__boxwiseBridge = {});
  bridge.data = component.data || {};
  bridge.send = component.setTriggerValue;
  if (bridge.installed) return;
  bridge.installed = true;

  const surfaceOf = (event) => {
    const target = event.composedPath ? event.composedPath()[0] : event.target;
    return target && target.classList && target.classList.contains("upper-canvas") ? target : null;
  };
  const at = (surface, event) => {
    const r = surface.getBoundingClientRect();
    return { x: event.clientX - r.left, y: event.clientY - r.top };
  };
  const toolbarButton = (surface, title) => {
    const root = surface.getRootNode();
    return root && root.querySelector ? root.querySelector(`button[title="${title}"]`) : null;
  };
  const hit = (point) => {
    const rects = bridge.data.rects || [];
    for (let k = rects.length - 1; k >= 0; k--) {
      const [index, left, top, width, height] = rects[k];
      const pad = 3;
      if (point.x >= left - pad && point.x <= left + width + pad &&
          point.y >= top - pad && point.y <= top + height + pad) return index;
    }
    return null;
  };

  // The canvas sends a drawing 200 ms after the mouse is released; its toolbar's "Update the
  // app with this drawing" sends it now.
  let lastRelease = 0;
  const flush = (surface) => {
    const send = surface && toolbarButton(surface, "Update the app with this drawing");
    if (send) send.click();
  };
  const anySurface = () => [...document.querySelectorAll("[data-testid=stBidiComponentIsolated]")]
    .map((host) => host.shadowRoot && host.shadowRoot.querySelector("canvas.upper-canvas"))
    .find(Boolean);
  window.addEventListener("keydown", (event) => {
    if (Date.now() - lastRelease < 1500) { lastRelease = 0; flush(anySurface()); }
  }, true);

  // Right after N the page's header names the next image while the canvas still shows the
  // one left behind (its replacement comes later in the same run), and a canvas just mounted
  // draws nothing until it has loaded its boxes. A drag made in either moment is held here and
  // replayed on the canvas of the image the header names once it is ready. Ready: the bridge
  // was mounted with that canvas (its `header` is the page's), and the canvas has painted a
  // box or is to show none (the page passes the boxes it shows).
  const readySurfaces = new WeakSet();
  const headerShown = () => { const h = document.querySelector("h4"); return h ? h.innerText : ""; };
  const isReady = (surface) => {
    if (bridge.data.header && !headerShown().startsWith(bridge.data.header)) return false;
    if (readySurfaces.has(surface)) return true;
    let painted = !(bridge.data.rects || []).length;
    const lower = surface.parentElement && surface.parentElement.querySelector("canvas.lower-canvas");
    if (!painted && lower && lower.width && lower.height) {
      const pixels = lower.getContext("2d").getImageData(0, 0, lower.width, lower.height).data;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) { painted = true; break; }
    }
    if (painted) readySurfaces.add(surface);
    return painted;
  };
  let held = null, replaying = false;
  const replay = (points) => {
    const surface = anySurface();
    if (!surface) { held = bridge.held = null; return; }
    if (!isReady(surface) && Date.now() - held.at < 5000) {
      setTimeout(() => replay(points), 40);
      return;
    }
    held = bridge.held = null;
    const r = surface.getBoundingClientRect();
    const fire = (type, p) => surface.dispatchEvent(new MouseEvent(type, {
      bubbles: true, composed: true, cancelable: true, view: window, button: 0,
      buttons: type === "mouseup" ? 0 : 1, clientX: r.left + p.x, clientY: r.top + p.y }));
    replaying = true;
    try {
      fire("mousedown", points[0]);
      points.slice(1).forEach((p) => fire("mousemove", p));
      fire("mouseup", points[points.length - 1]);
    } finally {
      replaying = false;
    }
    bridge.replayed = (bridge.replayed || 0) + 1;
    lastRelease = Date.now();
    setTimeout(() => { if (lastRelease) { lastRelease = 0; flush(surface); } }, 0);
  };
  const stop = (event) => { event.stopPropagation(); event.preventDefault(); };

  let down = null;
  document.addEventListener("pointerdown", (event) => {
    const surface = surfaceOf(event);
    if (!surface) return;
    if (!event.altKey && !held && !isReady(surface)) {
      held = bridge.held = { surface, points: [at(surface, event)], at: Date.now(), released: false };
      stop(event);
      return;
    }
    down = { surface, point: at(surface, event), pan: event.altKey };
    if (event.altKey) stop(event);
  }, true);
  document.addEventListener("mousedown", (event) => {
    if (replaying) return;
    if ((held && !held.released) || (down && down.pan)) stop(event);
  }, true);
  document.addEventListener("pointermove", (event) => {
    if (held && !held.released) held.points.push(at(held.surface, event));
  }, true);
  document.addEventListener("pointerup", (event) => {
    if (held && !held.released) {
      held.released = true;
      held.points.push(at(held.surface, event));
      stop(event);
      replay(held.points);
      return;
    }
    if (!down) return;
    const started = down;
    down = null;
    const point = at(started.surface, event);
    if (!started.pan) {
      // Sent once: by this timer, or by a key pressed before it ran (then not again here).
      lastRelease = Date.now();
      setTimeout(() => { if (lastRelease) { lastRelease = 0; flush(started.surface); } }, 0);
    }
    if (started.pan) {
      event.stopPropagation(); event.preventDefault();
      const dx = started.point.x - point.x, dy = started.point.y - point.y;
      if (Math.hypot(dx, dy) >= 3) bridge.send("pan", { dx, dy, at: Date.now() });
      return;
    }
    const edit = toolbarButton(started.surface, "Edit");
    if (!edit || edit.getAttribute("aria-pressed") !== "true") return;
    // Fabric.js settles its selection on the same mouse-up: read it a moment later.
    setTimeout(() => {
      const remove = toolbarButton(started.surface, "Delete selected");
      const selected = remove && !remove.disabled ? hit(started.point) : null;
      bridge.send("select", { index: selected, at: Date.now() });
    }, 30);
  }, true);
  document.addEventListener("mouseup", (event) => {
    if (replaying) return;
    if (event.altKey && surfaceOf(event)) { event.stopPropagation(); }
  }, true);

  // + and - zoom about the middle of the view (Streamlit shortcuts take no punctuation keys).
  document.addEventListener("keydown", (event) => {
    const target = event.composedPath ? event.composedPath()[0] : event.target;
    if (!target || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) || target.isContentEditable) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const steps = event.key === "+" || event.key === "=" ? 1 : event.key === "-" ? -1 : 0;
    if (!steps) return;
    const surface = [...document.querySelectorAll("[data-testid=stBidiComponentIsolated]")]
      .map((host) => host.shadowRoot && host.shadowRoot.querySelector("canvas.upper-canvas"))
      .find(Boolean);
    if (!surface) return;
    event.preventDefault();
    bridge.send("zoom", { steps, x: surface.width / 2, y: surface.height / 2, at: Date.now() });
  }, true);

  let lastWheel = 0;
  document.addEventListener("wheel", (event) => {
    const surface = surfaceOf(event);
    if (!surface) return;
    event.preventDefault();
    const now = Date.now();
    if (now - lastWheel < 250) return;
    lastWheel = now;
    const point = at(surface, event);
    bridge.send("zoom", { steps: event.deltaY < 0 ? 1 : -1, x: point.x, y: point.y, at: now });
  }, { capture: true, passive: false });

  // A click on the overview (the picture whose caption starts "View ") centres the view there.
  document.addEventListener("click", (event) => {
    const target = event.target;
    if (!target || target.tagName !== "IMG" || !bridge.data.zoomed) return;
    const frame = target.closest("[data-testid=stImage]");
    const caption = frame && (frame.parentElement || frame).querySelector("[data-testid=stImageCaption]");
    if (!caption || !caption.innerText.startsWith("View ")) return;
    const r = target.getBoundingClientRect();
    if (!r.width || !r.height) return;
    bridge.send("center", { fx: (event.clientX - r.left) / r.width, fy: (event.clientY - r.top) / r.height,
                            at: Date.now() });
  }, true);

  // A crosshair over the canvas while the mouse is on it.
  document.addEventListener("pointermove", (event) => {
    const surface = surfaceOf(event);
    const root = surface ? surface.getRootNode() : null;
    document.querySelectorAll("[data-testid=stBidiComponentIsolated]").forEach((host) => {
      const lines = host.shadowRoot && host.shadowRoot.querySelectorAll(".boxwise-crosshair");
      if (lines && (!root || host.shadowRoot !== root)) lines.forEach((l) => l.style.display = "none");
    });
    if (!surface || bridge.data.crosshair === false) return;
    const box = surface.parentElement;
    let [h, v] = box.querySelectorAll(".boxwise-crosshair");
    if (!h) {
      for (const vertical of [false, true]) {
        const line = document.createElement("div");
        line.className = "boxwise-crosshair";
        Object.assign(line.style, { position: "absolute", pointerEvents: "none", zIndex: 5,
          background: "rgba(255,255,255,0.8)", boxShadow: "0 0 0 0.5px rgba(0,0,0,0.6)",
          left: vertical ? "0" : "0", top: "0",
          width: vertical ? "1px" : "100%", height: vertical ? "100%" : "1px" });
        box.appendChild(line);
      }
      [h, v] = box.querySelectorAll(".boxwise-crosshair");
    }
    const point = at(surface, event);
    h.style.display = v.style.display = "block";
    h.style.top = `${Math.round(point.y)}px`;
    v.style.left = `${Math.round(point.x)}px`;
  }, true);
}
"""

_bridge = st.components.v2.component("boxwise_canvas_bridge", js=_JS, html="<span></span>")


def canvas_bridge(rects: list[list[float]], *, key: str, zoomed: bool = False,
                  crosshair: bool = True, header: str = ""):
    """Mount the bridge for the canvas on this page. `rects` are `[index, left, top, width,
    height]` (canvas pixels) of the boxes on the canvas, bottom to top; `header` is how the
    page's first `h4` starts while this canvas is the one on the page (a drag is held while
    it does not: see the module's docstring). Returns the component's
    result: `.zoom` (`{steps, x, y}`), `.pan` (`{dx, dy}`), `.select` (`{index}`) and
    `.center` (`{fx, fy}`: where the overview was clicked, as fractions of its width and
    height), each set only in the run its event caused."""
    return _bridge(data={"rects": rects, "crosshair": crosshair, "zoomed": zoomed, "header": header},
                   key=key,
                   on_zoom_change=lambda: None, on_pan_change=lambda: None,
                   on_select_change=lambda: None, on_center_change=lambda: None,
                   width="content", height="content")
