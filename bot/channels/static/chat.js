// yibao-bot web chat: renders the dialogue's replies as messenger bubbles and talks to POST /api/chat.
// No dependencies, no inline code (the page's Content-Security-Policy forbids both), no HTML from
// the server: every text goes in through textContent.
"use strict";

(function () {
  const UI = {
    zh: {
      htmlLang: "zh-CN",
      title: "医保报销估算",
      subtitle: "估算仅供参考，以医保经办机构结算为准",
      log: "对话",
      input: "你的回答",
      placeholder: "输入回答，或点按钮…",
      send: "发送",
      menu: "菜单",
      langButton: "EN",
      langLabel: "EN: switch to English",
      choices: "可选的回答",
      bot: "医保助手：",
      me: "你：",
      details: "计算过程",
      start: "重新估算", back: "上一步", help: "帮助", regions: "支持的地区", year: "我的年度", forget: "删除我的数据",
      offline: "连接不上服务器，请检查网络后再发一次。",
      failed: "出错了，请再发一次。",
    },
    en: {
      htmlLang: "en",
      title: "Medical insurance estimate",
      subtitle: "An estimate only: the insurance office's settlement counts",
      log: "Conversation",
      input: "Your answer",
      placeholder: "Type an answer, or tap a button…",
      send: "Send",
      menu: "Menu",
      langButton: "中文",
      langLabel: "中文：切换到中文",
      choices: "Possible answers",
      bot: "yibao-bot:",
      me: "You:",
      details: "How it's computed",
      start: "New estimate", back: "Back one step", help: "Help", regions: "Regions", year: "My year", forget: "Delete my data",
      offline: "Can't reach the server. Check the connection and send that again.",
      failed: "Something went wrong. Please send that again.",
    },
  };

  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const form = $("composer");
  const input = $("input");
  const send = $("send");
  const typing = $("typing");
  const langButton = $("lang");
  const menu = $("menu");
  let lang = document.documentElement.lang.startsWith("en") ? "en" : "zh";
  let queue = Promise.resolve();
  let pending = 0;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function applyLanguage(next) {
    if (next !== "zh" && next !== "en") return;
    lang = next;
    const ui = UI[lang];
    document.documentElement.lang = ui.htmlLang;
    document.title = ui.title + " · yibao-bot";
    $("title").textContent = ui.title;
    $("subtitle").textContent = ui.subtitle;
    log.setAttribute("aria-label", ui.log);
    $("input-label").textContent = ui.input;
    input.placeholder = ui.placeholder;
    send.setAttribute("aria-label", ui.send);
    $("menu-label").setAttribute("aria-label", ui.menu);
    langButton.textContent = ui.langButton;
    langButton.setAttribute("aria-label", ui.langLabel);
    langButton.lang = lang === "zh" ? "en" : "zh";
    for (const item of document.querySelectorAll("#menu-items [data-command]")) {
      item.textContent = ui[item.dataset.command];
    }
  }

  function now() {
    const d = new Date();
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  // One line of a reply; a run of █/░ (the estimate's share bar) becomes a drawn bar.
  function renderLine(line, target) {
    const match = /^(.*?)([█░]{4,})(.*)$/.exec(line);
    if (!match) {
      target.append(line);
      return;
    }
    target.append(match[1]);
    const bar = el("span", "share");
    bar.setAttribute("aria-hidden", "true");
    for (const ch of match[2]) bar.append(el("i", ch === "█" ? "on" : ""));
    target.append(bar, match[3]);
  }

  const LISTED = /^(\d+\.|•)\s/;
  const BAR = /[█░]{4,}/;

  // A short line without figures that opens a list ("How it was worked out", "Sources") reads as a heading.
  function isHeading(lines, i) {
    const line = lines[i];
    if (!line || line.length > 32 || /\d/.test(line) || LISTED.test(line) || i + 1 >= lines.length) return false;
    return LISTED.test(lines[i + 1]) || (i > 0 && lines[i - 1] === "" && lines[i + 1] !== "");
  }

  function renderText(text) {
    const box = el("div", "text");
    const lines = text.replace(/\s+$/, "").split("\n");
    // The estimate's figures: the lines just above its share bar.
    const bar = lines.findIndex((line) => BAR.test(line));
    let figuresFrom = bar;
    while (figuresFrom > 0 && bar - figuresFrom < 3 && lines[figuresFrom - 1] !== "") figuresFrom -= 1;
    lines.forEach((line, i) => {
      const className = bar >= 0 && i >= figuresFrom && i <= bar ? "figure" : isHeading(lines, i) ? "section" : "";
      const target = className ? el("span", className) : box;
      renderLine(line, target);
      if (target !== box) box.append(target);
      if (i + 1 < lines.length) box.append("\n");
    });
    return box;
  }

  function addMessage(who, reply, extraClass) {
    const msg = el("div", "msg " + who + (extraClass ? " " + extraClass : ""));
    const bubble = el("div", "bubble");
    bubble.append(el("span", "sr-only", UI[lang][who] + " "));
    if (reply.title) bubble.append(el("strong", "title", reply.title));
    bubble.append(renderText(reply.text || ""));
    if (reply.details) {  // an estimate's steps, comparisons and sources: folded until asked for
      const more = el("details", "more");
      more.append(el("summary", "", reply.details_label || UI[lang].details));
      more.append(renderText(reply.details));
      bubble.append(more);
    }
    const time = el("time", "", now());
    time.setAttribute("aria-hidden", "true");
    bubble.append(time);
    msg.append(bubble);
    if (reply.title || (reply.text || "").length > 280) msg.classList.add("wide");
    log.append(msg);
    return msg;
  }

  function retireKeyboards() {
    for (const old of log.querySelectorAll(".choices")) old.remove();
  }

  function addChoices(msg, rows) {
    if (!rows || !rows.length) return null;
    const group = el("div", "choices");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", UI[lang].choices);
    for (const row of rows) {
      const line = el("div", "row");
      for (const button of row) {
        const action = (button.id.split("|")[1] || "");
        const kind = action === "~calc" || action === "~new" ? "primary" : action.startsWith("~") ? "control" : "";
        const node = el("button", kind, button.label);
        node.type = "button";
        node.dataset.choice = button.id;
        node.addEventListener("click", () => choose(button));
        line.append(node);
      }
      group.append(line);
    }
    msg.append(group);
    return group;
  }

  function scrollDown() {
    requestAnimationFrame(() => { log.scrollTop = log.scrollHeight; });
  }

  // New replies scroll into view; a long one (an estimate) from its top, so its figures are seen first.
  function reveal(first) {
    requestAnimationFrame(() => {
      const bottom = log.scrollHeight - log.clientHeight;
      log.scrollTop = first ? Math.min(bottom, first.offsetTop - 8) : bottom;
    });
  }

  function showReplies(data, focusChoices) {
    if (data.lang) applyLanguage(data.lang);
    const replies = data.replies || [];
    if (replies.length) retireKeyboards();
    let keyboard = null;
    let first = null;
    for (const reply of replies) {
      const msg = addMessage("bot", reply);
      first = first || msg;
      keyboard = addChoices(msg, reply.buttons) || keyboard;
    }
    reveal(first);
    // Focus goes to the primary action where there is one (开始计算), else to the first choice.
    const target = keyboard && (keyboard.querySelector("button.primary") || keyboard.querySelector("button"));
    if (focusChoices && target) target.focus({ preventScroll: true });
    else if (focusChoices) input.focus({ preventScroll: true });
  }

  function busy(on) {
    pending += on ? 1 : -1;
    typing.hidden = pending === 0;
    send.disabled = pending > 0;
    log.setAttribute("aria-busy", pending > 0 ? "true" : "false");
    if (pending > 0) scrollDown();
  }

  // Requests go one after another, so replies always appear in the order things were sent.
  function post(body, focusChoices) {
    queue = queue.then(async () => {
      busy(true);
      try {
        const response = await fetch("/api/chat", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "Accept": "application/json" },
          body: JSON.stringify(body),
        });
        let data = {};
        try { data = await response.json(); } catch (e) { data = {}; }
        if (data.replies && data.replies.length) {
          showReplies(data, focusChoices);
          if (!response.ok) log.lastElementChild.classList.add("error");
        } else if (!response.ok) {
          addMessage("bot", { text: UI[lang].failed }, "error");
          scrollDown();
        } else {
          showReplies(data, focusChoices);
        }
      } catch (e) {
        addMessage("bot", { text: UI[lang].offline }, "error");
        scrollDown();
      } finally {
        busy(false);
      }
    });
    return queue;
  }

  function choose(button) {
    addMessage("me", { text: button.label });
    retireKeyboards();
    post({ choice: button.id }, true);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) { input.focus(); return; }
    input.value = "";
    addMessage("me", { text: text });
    scrollDown();
    post({ text: text }, false);
    input.focus({ preventScroll: true });
  });

  langButton.addEventListener("click", () => {
    post({ command: "language", argument: lang === "zh" ? "en" : "zh" }, true);
  });

  for (const item of document.querySelectorAll("#menu-items [data-command]")) {
    item.addEventListener("click", () => {
      menu.open = false;
      addMessage("me", { text: item.textContent });
      post({ command: item.dataset.command }, true);
    });
  }
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && menu.open) {
      menu.open = false;
      menu.querySelector("summary").focus();
    }
  });
  document.addEventListener("click", (event) => {
    if (menu.open && !menu.contains(event.target)) menu.open = false;
  });

  applyLanguage(lang);
  const preferred = (navigator.language || "").toLowerCase().startsWith("zh") ? "zh"
    : (navigator.language || "").toLowerCase().startsWith("en") ? "en" : "";
  post({ command: "resume", argument: preferred }, false);
})();
