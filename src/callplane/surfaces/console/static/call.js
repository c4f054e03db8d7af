// A call's page: the stereo recording as two waveform lanes (wavesurfer.js), the transcript in sync with it
// (the word being said is highlighted; a click on a word or a time seeks), signal evidence as timeline regions.
"use strict";
(function () {
  const player = document.getElementById("player");
  if (!player || typeof WaveSurfer === "undefined") return;
  const lane = (wave, progress) => ({ waveColor: wave, progressColor: progress, height: 64 });
  const stereo = player.dataset.channels === "2";
  const wavesurfer = WaveSurfer.create({
    container: document.getElementById("waveform"),
    url: player.dataset.url,
    height: 64,
    normalize: true,
    dragToSeek: true,
    cursorColor: "#d33",
    waveColor: "#5a8f6a",
    progressColor: "#2d5a3a",
    splitChannels: stereo ? [lane("#5a8f6a", "#2d5a3a"), lane("#5a6f9f", "#2d3f6a")] : undefined,
  });
  const regions = wavesurfer.registerPlugin(WaveSurfer.Regions.create());
  const play = document.getElementById("play");
  const clock = document.getElementById("clock");
  const words = Array.from(document.querySelectorAll("#transcript .word"));
  const starts = words.map((word) => parseFloat(word.dataset.start));
  let current = null;

  const format = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;

  // The last word that has started by `time` (binary search: the words are in time order per segment).
  function wordAt(time) {
    let low = 0, high = starts.length - 1, found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (starts[middle] <= time) { found = middle; low = middle + 1; } else { high = middle - 1; }
    }
    return found >= 0 ? words[found] : null;
  }

  function show(time) {
    clock.textContent = format(time);
    clock.dataset.time = time.toFixed(2);
    const word = wordAt(time + 0.01);
    if (word === current) return;
    if (current) { current.classList.remove("current"); current.removeAttribute("aria-current"); }
    current = word;
    if (current) {
      current.classList.add("current");
      current.setAttribute("aria-current", "true");
      if (!wavesurfer.isPlaying()) return;
      const box = current.getBoundingClientRect();
      if (box.top < 0 || box.bottom > window.innerHeight) current.scrollIntoView({ block: "center" });
    }
  }

  function seek(seconds) {
    wavesurfer.setTime(Math.max(0, seconds));
    show(wavesurfer.getCurrentTime());
  }

  wavesurfer.on("timeupdate", show);
  wavesurfer.on("play", () => { play.textContent = "Pause"; play.setAttribute("aria-label", "Pause"); });
  wavesurfer.on("pause", () => { play.textContent = "Play"; play.setAttribute("aria-label", "Play"); });
  wavesurfer.on("decode", () => {
    player.dataset.lanes = String(wavesurfer.getDecodedData().numberOfChannels);
    document.querySelectorAll("#evidence li").forEach((span) => {
      regions.addRegion({
        start: parseFloat(span.dataset.start),
        end: parseFloat(span.dataset.end),
        color: "rgba(255, 196, 0, 0.3)",
        content: span.dataset.signal,
        // On the lane of whoever said it (caller above, agent below), across both when unknown.
        channelIdx: stereo ? { caller: 0, agent: 1 }[span.dataset.speaker] ?? -1 : -1,
        drag: false,
        resize: false,
      });
    });
  });
  wavesurfer.on("ready", () => {
    player.dataset.ready = "true";
    const startAt = parseFloat(player.dataset.startAt);
    if (!Number.isNaN(startAt)) seek(startAt);
  });

  play.addEventListener("click", () => wavesurfer.playPause());
  document.getElementById("back").addEventListener("click", () => seek(wavesurfer.getCurrentTime() - 5));
  document.getElementById("forward").addEventListener("click", () => seek(wavesurfer.getCurrentTime() + 5));
  // Keyboard: space or k plays and pauses, the arrow keys step 5 seconds (not while typing in a field).
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea, button, a") || event.altKey || event.ctrlKey || event.metaKey) {
      return;
    }
    if (event.key === " " || event.key === "k") { wavesurfer.playPause(); event.preventDefault(); }
    else if (event.key === "ArrowLeft") { seek(wavesurfer.getCurrentTime() - 5); event.preventDefault(); }
    else if (event.key === "ArrowRight") { seek(wavesurfer.getCurrentTime() + 5); event.preventDefault(); }
  });
  document.addEventListener("click", (event) => {
    const target = event.target.closest(".word, .seek");
    if (target && target.dataset.start) seek(parseFloat(target.dataset.start));
  });
})();
