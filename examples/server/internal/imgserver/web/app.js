// The live page: a new picture follows each change of the prompt, the seed, the size, the
// sketch, the init picture or its strength after a short pause; a request made stale by a newer
// one is aborted. With an init picture, requests go to /v1/images/edits (image to image).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const prompt = $("prompt"), seed = $("seed"), width = $("width"), height = $("height");
  const generate = $("generate"), result = $("result"), status = $("status"), time = $("time");
  const usedSeed = $("usedseed"), live = $("live"), sketch = $("sketch"), scale = $("scale");
  const initInput = $("init"), initClear = $("initclear"), initPreview = $("initpreview"), strength = $("strength");
  const pause = 350; // ms of quiet before a live request
  const maxUpload = 4 << 20, maxUploadSide = 4096; // larger init pictures are scaled down here
  let controlnet = false, current = null, timer = 0, sketched = false, generation = 0;
  let minSide = 64, maxSide = 1024, initBlob = null, initURL = "";

  function setStatus(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  async function info() {
    try {
      const r = await fetch("v1/info");
      const i = await r.json();
      $("model").textContent = i.model || "";
      if (i.min_side) minSide = i.min_side;
      if (i.max_side) maxSide = i.max_side;
      if (i.edit_strength) { strength.value = i.edit_strength; $("strengthval").textContent = strength.value; }
      for (const el of [width, height]) {
        el.min = i.min_side; el.max = i.max_side;
        if (i.default_size) el.value = i.default_size;
      }
      controlnet = !!i.controlnet;
      $("sketchbox").hidden = !controlnet;
      if (controlnet) {
        clearSketch();
        if (i.control_scale) { scale.value = i.control_scale; $("scaleval").textContent = scale.value; }
      }
    } catch (e) {
      setStatus("cannot reach the server: " + e, true);
    }
  }

  // Generate: abort the request in flight (it is stale) and send a new one.
  async function run() {
    clearTimeout(timer);
    const text = prompt.value.trim();
    if (!text) { setStatus("type a prompt"); return; }
    if (current) current.abort();
    const ctl = new AbortController();
    current = ctl;
    const id = ++generation;
    const body = { prompt: prompt.value, n: 1, size: `${width.value}x${height.value}`, response_format: "b64_json" };
    if (seed.value !== "") body.seed = Number(seed.value);
    if (controlnet && sketched) {
      body.control_image = controlImage(Number(width.value), Number(height.value));
      body.control_scale = Number(scale.value);
    }
    let url = "v1/images/generations";
    let opts = {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal: ctl.signal,
    };
    if (initBlob) {
      // Image to image: multipart, as OpenAI's edits endpoint takes it.
      body.strength = strength.value;
      body.steps = stepsFor(Number(strength.value));
      const form = new FormData();
      for (const [k, v] of Object.entries(body)) form.append(k, String(v));
      form.append("image", initBlob, initBlob.name || "init.png");
      url = "v1/images/edits";
      opts = { method: "POST", body: form, signal: ctl.signal };
    }
    setStatus("generating…");
    const start = performance.now();
    try {
      const r = await fetch(url, opts);
      const j = await r.json();
      if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
      if (id !== generation) return;
      const d = j.data[0];
      result.src = "data:image/png;base64," + d.b64_json;
      result.dataset.seed = d.seed;
      result.dataset.prompt = body.prompt;
      result.dataset.size = body.size;
      result.dataset.control = body.control_image ? "1" : "";
      result.dataset.init = initBlob ? "1" : "";
      result.dataset.strength = initBlob ? body.strength : "";
      result.dataset.steps = initBlob ? body.steps : "";
      result.dataset.generation = id;
      const ms = performance.now() - start;
      time.textContent = (ms / 1000).toFixed(2) + " s per picture" +
        (j.timings ? ` (${j.timings.generate.toFixed(2)} s on the server)` : "");
      usedSeed.textContent = "seed " + d.seed;
      setStatus("");
    } catch (e) {
      if (e.name === "AbortError") return; // a newer request replaced this one
      if (id === generation) setStatus(e.message, true);
    } finally {
      if (current === ctl) current = null;
    }
  }

  // stepsFor is the fewest steps with which strength s runs one denoising step (int(steps·s) =
  // 1): one UNet pass whatever the strength, starting near timestep 1000·s.
  function stepsFor(s) {
    let n = Math.max(1, Math.ceil(1 / s - 1e-9));
    while (n * s < 1) n++;
    return n;
  }

  // The init picture: a file or, on phones, the camera. Its size (scaled to fit the server's
  // limits, rounded down to multiples of 8) becomes the picture's size.
  async function setInit(file) {
    let img;
    try {
      img = await createImageBitmap(file);
    } catch (e) {
      setStatus("the init picture cannot be read: " + (e.message || e), true);
      clearInit();
      return;
    }
    const scale = Math.min(1, maxSide / Math.max(img.width, img.height));
    const fit = (v) => Math.max(minSide, Math.floor(v * scale / 8) * 8);
    const w = fit(img.width), h = fit(img.height);
    width.value = w; height.value = h;
    initBlob = file;
    if (file.size > maxUpload || img.width > maxUploadSide || img.height > maxUploadSide) {
      // A large photo: send it at the picture's size (the server would resize it to that).
      const c = document.createElement("canvas");
      c.width = w; c.height = h;
      c.getContext("2d").drawImage(img, 0, 0, w, h);
      initBlob = await new Promise((resolve) => c.toBlob(resolve, "image/png"));
    }
    img.close();
    if (initURL) URL.revokeObjectURL(initURL);
    initURL = URL.createObjectURL(initBlob);
    initPreview.src = initURL;
    initPreview.hidden = false;
    initClear.hidden = false;
    $("strengthbox").hidden = false;
    schedule();
  }
  function clearInit() {
    initBlob = null;
    initInput.value = "";
    if (initURL) URL.revokeObjectURL(initURL);
    initURL = "";
    initPreview.removeAttribute("src");
    initPreview.hidden = true;
    initClear.hidden = true;
    $("strengthbox").hidden = true;
  }
  initInput.addEventListener("change", () => {
    if (initInput.files.length > 0) setInit(initInput.files[0]);
    else { clearInit(); schedule(); }
  });
  initClear.addEventListener("click", () => { clearInit(); schedule(); });
  strength.addEventListener("input", () => { $("strengthval").textContent = strength.value; if (initBlob) schedule(); });

  function schedule() {
    if (!live.checked) return;
    clearTimeout(timer);
    timer = setTimeout(run, pause);
  }

  // The sketch: black lines on white, with mouse, pen or touch (pointer events).
  const g = sketch.getContext("2d");
  function clearSketch() {
    g.fillStyle = "#fff";
    g.fillRect(0, 0, sketch.width, sketch.height);
    sketched = false;
  }
  // controlImage returns the sketch scaled to the picture's size, as a PNG data URL.
  function controlImage(w, h) {
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    const cg = c.getContext("2d");
    cg.fillStyle = "#fff"; cg.fillRect(0, 0, w, h);
    cg.drawImage(sketch, 0, 0, w, h);
    return c.toDataURL("image/png");
  }
  let drawing = false, last = null;
  function point(e) {
    const r = sketch.getBoundingClientRect();
    return { x: (e.clientX - r.left) * sketch.width / r.width, y: (e.clientY - r.top) * sketch.height / r.height };
  }
  sketch.addEventListener("pointerdown", (e) => {
    drawing = true; last = point(e);
    sketch.setPointerCapture(e.pointerId);
    g.fillStyle = "#000"; g.beginPath(); g.arc(last.x, last.y, 3, 0, 2 * Math.PI); g.fill();
    sketched = true;
    e.preventDefault();
  });
  sketch.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const p = point(e);
    g.strokeStyle = "#000"; g.lineWidth = 6; g.lineCap = "round"; g.lineJoin = "round";
    g.beginPath(); g.moveTo(last.x, last.y); g.lineTo(p.x, p.y); g.stroke();
    last = p;
    e.preventDefault();
  });
  const stop = () => { if (drawing) { drawing = false; schedule(); } };
  sketch.addEventListener("pointerup", stop);
  sketch.addEventListener("pointercancel", stop);
  $("clear").addEventListener("click", () => { clearSketch(); schedule(); });
  scale.addEventListener("input", () => { $("scaleval").textContent = scale.value; if (sketched) schedule(); });

  for (const el of [prompt, seed, width, height]) el.addEventListener("input", schedule);
  $("random").addEventListener("click", () => { seed.value = Math.floor(Math.random() * 2 ** 32); schedule(); });
  generate.addEventListener("click", run);
  prompt.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });

  info();
})();
