// The sscard kiosk page (docs/agent.md, "The kiosk page"): plain JavaScript, no framework.
//
// Every text comes from /kiosk/texts?lang= (Chinese by default, English switchable); the
// PIN change flow runs in the agent and talks to this page over the same-origin socket
// /kiosk/ws. A PIN typed on the screen lives only in a variable of this script until it is
// sent over that socket: never in the URL, storage or the page's text (dots only).
(() => {
  'use strict';

  const DEFAULT_LANG = 'zh_CN';
  const MAX_DIGITS = 12;
  const MIN_DIGITS = 4;
  const SHOW_RESULT_MS = 5000;
  const SHOW_UNKNOWN_MS = 12000;
  const NOTICE_MS = 5000;
  const RECONNECT_MS = 2000;

  // SCREEN ids (sscard.kiosk.SCREEN) -> picture and tone.
  const PICTURES = {
    insert: ['insert', 'info'],
    take: ['take', 'info'],
    pad_change: ['pad', 'info'],
    confirm_new: ['pad', 'warn'],
    reinsert: ['insert', 'warn'],
    changed: ['ok', 'ok'],
    unknown_insert: ['warn', 'warn'],
    unknown_staff: ['warn', 'warn'],
    no_pin: ['warn', 'warn'],
    blocked: ['warn', 'fail'],
    now_blocked: ['warn', 'fail'],
    pad_needed: ['warn', 'warn'],
    ask_current: ['lock', 'info'],
    ask_new: ['lock', 'info'],
    ask_again: ['lock', 'info'],
  };

  const el = (id) => document.getElementById(id);
  const ui = {
    body: document.body,
    panel: el('panel'),
    picture: el('picture'),
    message: el('message'),
    sub: el('sub'),
    mask: el('mask'),
    countdown: el('countdown'),
    countdownFill: el('countdown-fill'),
    countdownLeft: el('countdown-left'),
    start: el('start'),
    notice: el('notice'),
    keypad: el('keypad'),
    lang: el('lang'),
    clock: el('clock'),
  };

  let texts = null;
  let lang = DEFAULT_LANG;
  let socket = null;
  let present = false;
  let inFlow = false;
  let showingResult = false;
  let asking = null; // {seq, deadline}
  let digits = '';
  let tick = null;
  let resultTimer = null;
  let noticeTimer = null;

  const label = (key) => (texts ? texts.labels[key] : '');

  // --- texts and language -------------------------------------------------------------

  async function loadTexts(wanted) {
    const response = await fetch('texts?lang=' + encodeURIComponent(wanted), { cache: 'no-store' });
    if (!response.ok) throw new Error('texts: HTTP ' + response.status);
    texts = await response.json();
    lang = texts.lang;
    document.documentElement.lang = lang === 'zh_CN' ? 'zh-CN' : 'en';
    document.body.dataset.lang = lang;
    document.title = label('title');
    for (const node of document.querySelectorAll('[data-label]')) {
      node.textContent = label(node.dataset.label);
    }
    const other = lang === 'zh_CN' ? 'en' : 'zh_CN';
    ui.lang.textContent = texts.languages[other];
    ui.lang.dataset.switchTo = other;
    if (!inFlow && !showingResult) renderIdle();
  }

  ui.lang.addEventListener('click', () => {
    if (inFlow) return;
    loadTexts(ui.lang.dataset.switchTo || DEFAULT_LANG).catch(renderOffline);
  });

  // --- screens ------------------------------------------------------------------------

  function screen(state, { picture, tone, key = '', text = '', sub = '' }) {
    ui.body.dataset.state = state;
    ui.panel.dataset.tone = tone;
    ui.picture.dataset.picture = picture;
    ui.message.textContent = text;
    ui.message.dataset.key = key || '';
    ui.sub.textContent = sub;
    ui.start.hidden = state !== 'ready';
    if (state !== 'pin') hideKeypad();
  }

  function renderOffline() {
    inFlow = false;
    showingResult = false;
    screen('offline', { picture: 'offline', tone: 'warn', key: 'offline', text: label('offline') });
  }

  function renderIdle() {
    if (!texts) return;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      renderOffline();
    } else if (present) {
      screen('ready', { picture: 'ready', tone: 'info', key: 'ready', text: label('ready') });
    } else {
      screen('idle', { picture: 'insert', tone: 'info', key: 'insert', text: texts.screen.insert });
    }
  }

  function renderWorking() {
    screen('flow', { picture: 'wait', tone: 'info', key: 'working', text: label('working') });
  }

  function notice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { ui.notice.hidden = true; }, NOTICE_MS);
  }

  function toneOf(key) {
    if (PICTURES[key]) return PICTURES[key];
    return ['fail', 'fail']; // every other result: not changed
  }

  function showScreen(message) {
    const key = message.key || '';
    if (key === 'take') {
      // keep the result on screen; ask for the card below it
      ui.body.dataset.state = 'take';
      ui.sub.textContent = message.text;
      return;
    }
    if (key === 'insert' && inFlow) {
      renderWorking(); // the flow starts: the card is already in
      return;
    }
    const [picture, tone] = toneOf(key);
    const state = ['changed'].includes(key) || tone === 'fail' ? 'result' : 'flow';
    let sub = '';
    if (key === 'pad_change' || key === 'confirm_new') sub = label('pad_hint');
    screen(state, { picture, tone, key, text: message.text, sub });
  }

  function showOutcome(message) {
    inFlow = false;
    showingResult = true;
    ui.body.dataset.changed = String(message.changed);
    const [picture, tone] = message.changed === true ? ['ok', 'ok']
      : message.changed === null ? ['warn', 'warn'] : toneOf(message.key || '');
    screen('result', {
      picture, tone, key: message.key || 'outcome', text: message.text,
      sub: message.changed === null ? '' : label('done'),
    });
    clearTimeout(resultTimer);
    resultTimer = setTimeout(() => {
      showingResult = false;
      delete ui.body.dataset.changed;
      renderIdle();
    }, message.changed === null ? SHOW_UNKNOWN_MS : SHOW_RESULT_MS);
  }

  // --- the on-screen pad --------------------------------------------------------------

  function drawMask() {
    const shown = Math.max(6, digits.length);
    let dots = '';
    for (let i = 0; i < shown; i += 1) dots += i < digits.length ? '\u25CF' : '\u25CB';
    ui.mask.textContent = dots;
    ui.mask.dataset.count = String(digits.length);
    el('key-ok').disabled = digits.length < MIN_DIGITS;
  }

  function askPin(message) {
    digits = '';
    asking = { seq: message.seq, deadline: Date.now() + message.timeout * 1000, total: message.timeout };
    const [picture, tone] = toneOf(message.key || 'ask_current');
    screen('pin', { picture, tone, key: message.key || 'ask', text: message.prompt, sub: label('screen_hint') });
    ui.keypad.hidden = false;
    ui.mask.hidden = false;
    ui.countdown.hidden = false;
    for (const key of ui.keypad.querySelectorAll('button')) key.disabled = false;
    drawMask();
    clearInterval(tick);
    tick = setInterval(drawCountdown, 200);
    drawCountdown();
  }

  function drawCountdown() {
    if (!asking) return;
    const leftMs = Math.max(0, asking.deadline - Date.now());
    const seconds = Math.ceil(leftMs / 1000);
    ui.countdownFill.style.width = (100 * leftMs / (asking.total * 1000)).toFixed(1) + '%';
    ui.countdownLeft.textContent = label('countdown').replace('{seconds}', String(seconds));
    ui.countdown.dataset.urgent = String(seconds <= 10);
    if (leftMs <= 0) {
      digits = '';
      for (const key of ui.keypad.querySelectorAll('button')) key.disabled = true;
    }
  }

  function hideKeypad() {
    digits = '';
    asking = null;
    clearInterval(tick);
    ui.keypad.hidden = true;
    ui.mask.hidden = true;
    ui.countdown.hidden = true;
    ui.mask.textContent = '';
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function press(digit) {
    if (!asking || digits.length >= MAX_DIGITS) return;
    digits += digit;
    drawMask();
  }

  function submit() {
    if (!asking || digits.length < MIN_DIGITS) return;
    const seq = asking.seq;
    const value = digits;
    hideKeypad();
    renderWorking();
    send({ type: 'pin', seq, value });
  }

  function cancel() {
    if (!asking) return;
    const seq = asking.seq;
    hideKeypad();
    renderWorking();
    send({ type: 'cancel', seq });
  }

  for (const key of ui.keypad.querySelectorAll('[data-digit]')) {
    key.addEventListener('click', () => press(key.dataset.digit));
  }
  el('key-clear').addEventListener('click', () => { digits = ''; drawMask(); });
  el('key-back').addEventListener('click', () => { digits = digits.slice(0, -1); drawMask(); });
  el('key-ok').addEventListener('click', submit);
  el('key-cancel').addEventListener('click', cancel);
  document.addEventListener('keydown', (event) => {
    if (!asking) return;
    if (/^[0-9]$/.test(event.key)) press(event.key);
    else if (event.key === 'Backspace') { digits = digits.slice(0, -1); drawMask(); }
    else if (event.key === 'Enter') submit();
    else if (event.key === 'Escape') cancel();
    else return;
    event.preventDefault();
  });

  // --- the channel ------------------------------------------------------------------------

  ui.start.addEventListener('click', () => {
    if (inFlow || !socket || socket.readyState !== WebSocket.OPEN) return;
    inFlow = true;
    renderWorking();
    send({ type: 'start', lang });
  });

  function handle(message) {
    switch (message.type) {
      case 'event':
        present = message.event === 'card.inserted';
        if (!inFlow && !showingResult) renderIdle();
        break;
      case 'screen':
        inFlow = true;
        showScreen(message);
        break;
      case 'ask_pin':
        inFlow = true;
        askPin(message);
        break;
      case 'ask_end':
        if (asking && asking.seq === message.seq) { hideKeypad(); renderWorking(); }
        break;
      case 'outcome':
        showOutcome(message);
        break;
      case 'error':
        if (message.key !== 'pin_digits') inFlow = false;
        if (!inFlow && !showingResult) renderIdle();
        notice(message.text);
        break;
      default:
        break;
    }
  }

  function connect() {
    const base = location.pathname.replace(/[^/]*$/, '');
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(scheme + location.host + base + 'ws');
    socket = ws;
    ws.addEventListener('open', () => { if (!inFlow && !showingResult) renderIdle(); });
    ws.addEventListener('message', (event) => handle(JSON.parse(event.data)));
    ws.addEventListener('close', () => {
      if (socket === ws) socket = null;
      hideKeypad();
      renderOffline();
      setTimeout(connect, RECONNECT_MS);
    });
  }

  function drawClock() {
    const now = new Date();
    const pad = (n) => String(n).padStart(2, '0');
    ui.clock.textContent = `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())} ` +
      `${pad(now.getHours())}:${pad(now.getMinutes())}`;
  }

  drawClock();
  setInterval(drawClock, 10000);
  loadTexts(DEFAULT_LANG).then(connect).catch(() => {
    ui.body.dataset.state = 'offline';
    setTimeout(() => location.reload(), RECONNECT_MS * 5);
  });
})();
