// The chat playground: one websocket (the console session's cookie authenticates it), one
// chat at a time, tokens appended as they arrive, cancel, and the usage and version at the end.
"use strict";

(function () {
  const form = document.getElementById("playground");
  if (!form) return;
  const $ = function (id) { return document.getElementById(id); };
  const status = $("playground-status");
  const output = $("playground-output");
  const sendButton = $("playground-send");
  const cancelButton = $("playground-cancel");
  const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  let socket = null;
  let current = null;
  let counter = 0;

  function setBusy(busy) {
    sendButton.disabled = busy;
    cancelButton.disabled = !busy;
  }

  function connect() {
    socket = new WebSocket(scheme + window.location.host + "/ws/chat/");
    socket.addEventListener("open", function () { status.textContent = "Ready"; setBusy(false); });
    socket.addEventListener("close", function (event) {
      status.textContent = "Disconnected (" + event.code + "); reconnecting…";
      setBusy(true);
      cancelButton.disabled = true;
      current = null;
      window.setTimeout(connect, 2000);
    });
    socket.addEventListener("message", function (event) {
      const frame = JSON.parse(event.data);
      if (frame.id !== current) return;
      if (frame.type === "start") {
        $("playground-version").textContent = frame.model + " " + frame.version;
        status.textContent = "Streaming…";
      } else if (frame.type === "token") {
        output.textContent += frame.text;
      } else if (frame.type === "done") {
        const usage = frame.usage;
        $("playground-usage").textContent =
          usage.prompt_tokens + " prompt + " + usage.completion_tokens + " completion = " + usage.total_tokens + " tokens";
        status.textContent = "Done (" + frame.finish_reason + ")";
        current = null;
        setBusy(false);
      } else if (frame.type === "error") {
        status.textContent = "Error: " + frame.message;
        current = null;
        setBusy(false);
      }
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!socket || socket.readyState !== WebSocket.OPEN || current) return;
    counter += 1;
    current = "playground-" + counter;
    output.textContent = "";
    $("playground-usage").textContent = "-";
    status.textContent = "Waiting for the model…";
    setBusy(true);
    socket.send(JSON.stringify({
      type: "chat",
      id: current,
      model: $("playground-model").value,
      messages: [{ role: "user", content: $("playground-prompt").value }],
      max_tokens: Number($("playground-max-tokens").value),
      temperature: Number($("playground-temperature").value),
    }));
  });

  cancelButton.addEventListener("click", function () {
    if (current && socket) socket.send(JSON.stringify({ type: "cancel", id: current }));
  });

  setBusy(true);
  cancelButton.disabled = true;
  connect();
})();
