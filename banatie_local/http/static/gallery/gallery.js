// banatie-local gallery (API.md §15). Plain JavaScript, no framework, no build step.
// It speaks only the public API, with the project key the person pasted in, and
// loads nothing from outside the appliance.

const KEY_STORAGE = "banatie-local.projectKey";
const ALIAS_RE = /^@[A-Za-z0-9_-]{1,49}$/;
const SCOPE_RE = /^[A-Za-z0-9_-]{1,64}$/;
const PAGE_SIZE = 30;
const MAX_REFERENCES = 3;
const THUMB = { w: "320", h: "320", fit: "cover", format: "auto" };
const LARGE = { w: "1600", h: "1600", fit: "contain", format: "auto" };
const SMALL = { w: "120", h: "120", fit: "cover", format: "auto" };

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- DOM helpers

/** An element with attributes (``on*`` are listeners; never a style attribute). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "text") {
      el.textContent = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function show(el, visible = true) {
  el.hidden = !visible;
}

function sentence(text) {
  const s = String(text || "").trim();
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

function describe(error) {
  if (error instanceof ApiError) {
    return error.code ? `${sentence(error.message)} (${error.code})` : sentence(error.message);
  }
  return sentence(error && error.message ? error.message : String(error));
}

function showError(el, error) {
  el.textContent = error ? describe(error) : "";
  show(el, Boolean(error));
}

function announce(text) {
  const el = $("announce");
  el.textContent = "";
  // a fresh text node, so screen readers read a repeated message again
  requestAnimationFrame(() => (el.textContent = text));
}

function notice(error) {
  $("notice-text").textContent = typeof error === "string" ? error : describe(error);
  show($("notice"));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function bytes(n) {
  if (typeof n !== "number") return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(2)} MB`;
}

function short(id) {
  return id ? String(id).slice(0, 8) : "";
}

function withAt(text) {
  const value = text.trim();
  return value && !value.startsWith("@") ? `@${value}` : value;
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** One call of the v1 API; its envelope's data (and pagination), or an ApiError with
 * the server's own message. */
async function api(method, path, { body, form, headers = {}, key = state.key } = {}) {
  const init = {
    method,
    headers: { Accept: "application/json", ...headers },
    cache: "no-store",
    credentials: "omit",
  };
  if (key) init.headers["X-API-Key"] = key;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (form) init.body = form;
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(
      0,
      "NETWORK_ERROR",
      `the appliance could not be reached (${error.message}). Is banatie-local still running?`,
    );
  }
  let payload = null;
  try {
    const text = await response.text();
    payload = text ? JSON.parse(text) : null;
  } catch {
    payload = null;
  }
  if (!response.ok || !payload || payload.success === false) {
    const error = payload && payload.error;
    if (error && error.message) {
      if (response.status === 429 && response.headers.get("Retry-After")) {
        const wait = response.headers.get("Retry-After");
        throw new ApiError(429, error.code, `${error.message} Try again in ${wait} s.`, error.details);
      }
      const failure = new ApiError(response.status, error.code || "", error.message, error.details);
      if (response.status === 401 && key && key === state.key) {
        // the key stopped working while signed in (revoked, expired)
        notice(`${describe(failure)} Sign out, then sign in with a valid project key.`);
      }
      throw failure;
    }
    const what = `${response.status} ${response.statusText}`.trim();
    throw new ApiError(response.status, `HTTP_${response.status}`, `the appliance answered ${what}.`);
  }
  return payload;
}

/** Every page of a list, up to ``cap`` items. */
async function all(path, cap = 500) {
  const items = [];
  for (let offset = 0; items.length < cap; ) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api("GET", `${path}${sep}limit=100&offset=${offset}`);
    items.push(...page.data);
    offset += page.data.length;
    if (!page.pagination || !page.pagination.hasMore || page.data.length === 0) break;
  }
  return items;
}

// ---------------------------------------------------------------- state

const state = {
  key: null,
  project: null,
  info: null,
  publicBase: location.origin,
  epoch: 0, // bumped on sign-out: late answers of the last session are dropped
  gridEpoch: 0, // bumped when the grid starts over (a filter changed)
  images: [], // the grid, in order
  known: new Map(), // every image seen, by id
  generations: new Map(), // by id
  genCursor: { offset: 0, hasMore: true, oldest: null },
  offset: 0,
  hasMore: true,
  total: 0,
  loading: false,
  filter: { flowId: "", source: "" },
  refs: [], // images chosen as references
  flows: [],
  flowsOffset: 0,
  signed: new Map(),
  detail: null, // {image, opener}
  flowView: null, // {id, flow, images}
};

function resetState() {
  state.epoch += 1;
  Object.assign(state, {
    key: null,
    project: null,
    images: [],
    known: new Map(),
    generations: new Map(),
    genCursor: { offset: 0, hasMore: true, oldest: null },
    offset: 0,
    hasMore: true,
    total: 0,
    loading: false,
    filter: { flowId: "", source: "" },
    refs: [],
    flows: [],
    flowsOffset: 0,
    signed: new Map(),
    detail: null,
    flowView: null,
  });
}

function remember(image) {
  state.known.set(image.id, image);
  if (image.storageUrl && image.storageUrl.includes("/cdn/")) {
    state.publicBase = image.storageUrl.slice(0, image.storageUrl.indexOf("/cdn/"));
  }
  return image;
}

// ---------------------------------------------------------------- image URLs

function projectPath() {
  const p = state.project;
  return `/cdn/${encodeURIComponent(p.organizationSlug)}/${encodeURIComponent(p.slug)}`;
}

function versionOf(image) {
  const t = Date.parse(image.updatedAt || "");
  return Number.isNaN(t) ? "0" : t.toString(36);
}

/** A same-origin URL of ``image`` at a variant size; signed when the project says so. */
async function imageSrc(image, variant) {
  const path = `${projectPath()}/img/${encodeURIComponent(image.id)}`;
  // v changes with the image (a new focal point re-crops), so the browser's copy is
  // never stale; the server ignores it
  const query = { ...variant, v: versionOf(image) };
  if (state.project.signedUrls === "all") return signedPath(path, query);
  return `${path}?${new URLSearchParams(query)}`;
}

async function signedPath(path, query) {
  const cacheKey = `${path}?${new URLSearchParams(query)}`;
  if (!state.signed.has(cacheKey)) {
    const promise = api("POST", "/api/v1/signed-urls", { body: { path, query } }).then((r) => r.data);
    state.signed.set(cacheKey, promise);
    promise.catch(() => state.signed.delete(cacheKey));
  }
  return (await state.signed.get(cacheKey)).path;
}

function setImage(img, image, variant) {
  imageSrc(image, variant).then(
    (src) => (img.src = src),
    (error) => {
      img.closest(".tile")?.classList.add("broken");
      img.title = describe(error);
    },
  );
}

function promptOf(image) {
  const gen = image.generationId ? state.generations.get(image.generationId) : null;
  if (gen) return gen.originalPrompt || gen.prompt;
  return null;
}

function altOf(image) {
  const prompt = promptOf(image);
  if (prompt) return prompt;
  if (image.source === "uploaded") return `Uploaded image${image.alias ? ` ${image.alias}` : ""}`;
  return `Image ${short(image.id)}`;
}

// ---------------------------------------------------------------- sign in / out

async function boot() {
  wireEvents();
  try {
    state.info = (await api("GET", "/api/info", { key: null })).data;
  } catch (error) {
    notice(error);
  }
  fillStaticChoices();
  show($("booting"), false);
  const saved = localStorage.getItem(KEY_STORAGE);
  if (!saved) {
    showSignIn();
    return;
  }
  try {
    const project = (await api("GET", "/api/v1/project", { key: saved })).data;
    await startSession(saved, project);
  } catch (error) {
    if (error.status === 401 || error.status === 403) localStorage.removeItem(KEY_STORAGE);
    $("signin-key").value = error.status === 401 || error.status === 403 ? "" : saved;
    showSignIn();
    showError($("signin-error"), error);
  }
}

function showSignIn() {
  show($("signin"));
  show($("nav"), false);
  show($("who"), false);
  for (const view of document.querySelectorAll(".view")) show(view, false);
  $("signin-key").focus();
}

async function signIn(event) {
  event.preventDefault();
  const key = $("signin-key").value.trim();
  const button = event.submitter || $("signin-form").querySelector("button");
  showError($("signin-error"), null);
  if (!key) {
    showError($("signin-error"), new Error("Paste a project key first."));
    return;
  }
  if (!/^[\x21-\x7e]+$/.test(key)) {
    showError($("signin-error"), new Error("A key has only letters, digits and punctuation: check what was pasted."));
    return;
  }
  button.disabled = true;
  try {
    const project = (await api("GET", "/api/v1/project", { key })).data;
    localStorage.setItem(KEY_STORAGE, key);
    $("signin-key").value = "";
    await startSession(key, project);
  } catch (error) {
    showError($("signin-error"), error);
    $("signin-key").focus();
  } finally {
    button.disabled = false;
  }
}

function signOut() {
  localStorage.removeItem(KEY_STORAGE);
  resetState();
  $("grid").replaceChildren();
  $("jobs").replaceChildren();
  $("gen-refs").replaceChildren();
  $("flows-body").replaceChildren();
  $("flow-images").replaceChildren();
  $("flow-aliases").replaceChildren();
  $("scopes-body").replaceChildren();
  $("live-scope-list").replaceChildren();
  $("filter-source").value = "";
  $("filter-flow").replaceChildren();
  $("gen-flow").replaceChildren();
  show($("notice"), false);
  show($("live-result"), false);
  if ($("detail").open) $("detail").close();
  showSignIn();
  announce("Signed out. The key was removed from this browser.");
}

async function startSession(key, project) {
  state.key = key;
  state.project = project;
  show($("signin"), false);
  show($("nav"));
  show($("who"));
  $("who-project").textContent = `${project.organizationSlug}/${project.slug}`;
  renderRefs();
  loadFlowChoices();
  route();
  if (currentView() !== "images") resetGrid();
}

function fillStaticChoices() {
  const info = state.info;
  const ratios = info ? Object.entries(info.aspectRatios) : [["1:1", { width: 1024, height: 1024 }]];
  const templates = info ? info.templates : ["general"];
  const ratioOptions = (preferred) =>
    ratios.map(([ratio, size]) =>
      h("option", { value: ratio, selected: ratio === preferred, title: `${size.width} × ${size.height} px` }, ratio),
    );
  $("gen-ratio").replaceChildren(...ratioOptions("1:1"));
  $("live-ratio").replaceChildren(...ratioOptions("16:9"));
  for (const id of ["gen-template", "live-template"]) {
    $(id).replaceChildren(...templates.map((t) => h("option", { value: t }, t)));
  }
  const formats = info ? info.variantFormats : ["png", "jpeg", "webp"];
  $("live-format").replaceChildren(
    h("option", { value: "" }, "as generated"),
    h("option", { value: "auto" }, "auto (best the browser takes)"),
    ...formats.map((f) => h("option", { value: f }, f)),
  );
}

// ---------------------------------------------------------------- views

function currentView() {
  const hash = location.hash.replace(/^#/, "");
  if (hash.startsWith("flow/")) return "flow";
  if (hash === "flows" || hash === "live") return hash;
  return "images";
}

function route() {
  if (!state.key) return;
  const view = currentView();
  for (const section of document.querySelectorAll(".view")) show(section, section.id === `view-${view}`);
  for (const link of $("nav").querySelectorAll("a")) {
    const active = link.dataset.view === view || (view === "flow" && link.dataset.view === "flows");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "images" && state.images.length === 0 && !state.loading) resetGrid();
  if (view === "flows") loadFlows(true);
  if (view === "flow") openFlow(decodeURIComponent(location.hash.slice("#flow/".length)));
  if (view === "live") loadScopes();
}

// ---------------------------------------------------------------- the grid

function gridQuery() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(state.offset) });
  if (state.filter.flowId) query.set("flowId", state.filter.flowId);
  if (state.filter.source) query.set("source", state.filter.source);
  return query;
}

function resetGrid() {
  state.gridEpoch += 1;
  state.images = [];
  state.offset = 0;
  state.hasMore = true;
  state.total = 0;
  state.loading = false;
  $("grid").replaceChildren();
  show($("grid-error"), false);
  show($("grid-empty"), false);
  updateCount();
  loadMore();
}

async function loadMore() {
  if (state.loading || !state.hasMore || !state.key) return;
  state.loading = true;
  const epoch = state.epoch;
  const gridEpoch = state.gridEpoch;
  const current = () => epoch === state.epoch && gridEpoch === state.gridEpoch;
  show($("grid-more"), false);
  show($("grid-error"), false);
  let failed = false;
  try {
    const page = await api("GET", `/api/v1/images?${gridQuery()}`);
    if (!current()) return;
    await ensureGenerations(page.data).catch(() => {}); // prompts for alt text; optional
    if (!current()) return;
    state.offset += page.data.length;
    state.hasMore = page.pagination.hasMore && page.data.length > 0;
    state.total = page.pagination.total;
    const fresh = page.data.filter((image) => !state.images.some((i) => i.id === image.id));
    for (const image of fresh) {
      remember(image);
      state.images.push(image);
      $("grid").append(tile(image));
    }
  } catch (error) {
    if (!current()) return;
    failed = true;
    showError($("grid-error"), error);
  } finally {
    if (current()) {
      state.loading = false;
      updateCount();
      const more = $("grid-more");
      more.textContent = failed ? "Try again" : "Load more images";
      show(more, state.hasMore);
    }
  }
  if (!failed && current()) requestAnimationFrame(fillViewport);
}

/** IntersectionObserver fires on a change only: keep loading while the end shows. */
function fillViewport() {
  if (!state.hasMore || state.loading || currentView() !== "images") return;
  const sentinel = $("grid-sentinel").getBoundingClientRect();
  if (sentinel.top < window.innerHeight + 600) loadMore();
}

function updateCount() {
  const n = state.images.length;
  const text = state.total ? `${n} of ${state.total} images` : state.loading ? "Loading…" : "";
  $("grid-count").textContent = text;
  show($("grid-empty"), !state.loading && state.total === 0 && n === 0 && !$("grid-error").textContent);
}

/** Load the generations of ``images`` (their prompts are the alt text): the newest
 * pages of the list, then one by one for any left. */
async function ensureGenerations(images) {
  const missing = () =>
    images.filter((image) => image.generationId && !state.generations.has(image.generationId));
  const cursor = state.genCursor;
  let wanted = missing();
  while (wanted.length > 4 && cursor.hasMore) {
    const oldestWanted = Math.min(...wanted.map((image) => Date.parse(image.createdAt)));
    if (cursor.oldest !== null && cursor.oldest <= oldestWanted) break;
    const page = await api("GET", `/api/v1/generations?limit=100&offset=${cursor.offset}`);
    for (const gen of page.data) state.generations.set(gen.id, gen);
    cursor.offset += page.data.length;
    cursor.hasMore = page.pagination.hasMore && page.data.length > 0;
    if (page.data.length) cursor.oldest = Date.parse(page.data[page.data.length - 1].createdAt);
    wanted = missing();
  }
  const ids = [...new Set(wanted.map((image) => image.generationId))].slice(0, 40);
  await Promise.all(
    ids.map((id) =>
      api("GET", `/api/v1/generations/${encodeURIComponent(id)}`)
        .then((r) => state.generations.set(id, r.data))
        .catch(() => {}),
    ),
  );
}

function tile(image) {
  const alt = altOf(image);
  const img = h("img", { alt, loading: "lazy", decoding: "async", width: 320, height: 320 });
  img.addEventListener("error", () => li.classList.add("broken"));
  setImage(img, image, THUMB);
  const caption = h(
    "span",
    { class: "tile-caption" },
    h("span", { class: "tile-prompt", "aria-hidden": "true" }, alt),
    image.alias ? h("span", { class: "badge alias" }, image.alias) : null,
    h("span", { class: "badge" }, image.source),
  );
  const open = h(
    "button",
    { type: "button", class: "tile-open", onclick: (e) => openDetail(image.id, e.currentTarget) },
    img,
    caption,
  );
  const picked = state.refs.some((r) => r.id === image.id);
  const ref = h(
    "button",
    {
      type: "button",
      class: "tile-ref",
      "aria-pressed": picked ? "true" : "false",
      "aria-label": `Use as reference: ${alt}`,
      title: "Use as a reference in the next generation",
      onclick: () => toggleRef(image),
    },
    picked ? "✓ ref" : "+ ref",
  );
  const li = h("li", { class: "tile", dataset: { id: image.id } }, open, ref);
  return li;
}

/** Re-draw every tile of ``image`` (grid, flow view) after it changed. */
function refreshTiles(image) {
  remember(image);
  const index = state.images.findIndex((i) => i.id === image.id);
  if (index >= 0) state.images[index] = image;
  for (const old of document.querySelectorAll(`.tile[data-id="${CSS.escape(image.id)}"]`)) {
    const focused = old.contains(document.activeElement);
    const fresh = tile(image);
    if (old.classList.contains("fresh")) fresh.classList.add("fresh");
    old.replaceWith(fresh);
    if (focused) fresh.querySelector(".tile-open").focus();
    if (state.detail && state.detail.image.id === image.id && state.detail.opener === old.querySelector(".tile-open")) {
      state.detail.opener = fresh.querySelector(".tile-open");
    }
  }
}

function removeTiles(id) {
  state.images = state.images.filter((i) => i.id !== id);
  state.known.delete(id);
  state.refs = state.refs.filter((r) => r.id !== id);
  renderRefs();
  let next = null;
  for (const old of document.querySelectorAll(`.tile[data-id="${CSS.escape(id)}"]`)) {
    next = next || old.nextElementSibling || old.previousElementSibling;
    old.remove();
  }
  if (state.total > 0) state.total -= 1;
  if (state.offset > 0) state.offset -= 1;
  updateCount();
  return next ? next.querySelector(".tile-open") : null;
}

/** An alias assigned to ``image`` leaves every other image that held it. */
function aliasMoved(image) {
  if (!image.alias) return false;
  let moved = false;
  for (const other of [...state.known.values()]) {
    if (other.id !== image.id && other.alias === image.alias) {
      refreshTiles({ ...other, alias: null });
      moved = true;
    }
  }
  return moved;
}

function matchesFilter(image) {
  if (state.filter.source && image.source !== state.filter.source) return false;
  if (state.filter.flowId && image.flowId !== state.filter.flowId) return false;
  return true;
}

function prepend(image) {
  remember(image);
  aliasMoved(image);
  if (!matchesFilter(image) || state.images.some((i) => i.id === image.id)) return;
  state.images.unshift(image);
  state.offset += 1;
  state.total += 1;
  const li = tile(image);
  li.classList.add("fresh");
  $("grid").prepend(li);
  setTimeout(() => li.classList.remove("fresh"), 6000);
  updateCount();
}

// ---------------------------------------------------------------- filters and flows

async function loadFlowChoices() {
  const epoch = state.epoch;
  try {
    const flows = await all("/api/v1/flows", 200);
    if (epoch !== state.epoch) return;
    state.flows = flows;
  } catch (error) {
    if (epoch === state.epoch) notice(error);
  }
  renderFlowChoices();
}

function flowLabel(flow) {
  const aliases = Object.keys(flow.aliases || {});
  const named = aliases.length ? ` ${aliases.slice(0, 2).join(" ")}` : "";
  return `${short(flow.id)}${named} (${flow.imageCount} images)`;
}

function renderFlowChoices() {
  const filter = $("filter-flow");
  const chosen = state.filter.flowId;
  const options = [h("option", { value: "" }, "all flows")];
  for (const flow of state.flows) options.push(h("option", { value: flow.id }, flowLabel(flow)));
  if (chosen && !state.flows.some((f) => f.id === chosen)) {
    options.push(h("option", { value: chosen }, `${short(chosen)} (no flow record)`));
  }
  filter.replaceChildren(...options);
  filter.value = chosen;

  const gen = $("gen-flow");
  const before = gen.value;
  gen.replaceChildren(
    h("option", { value: "" }, "a new flow id"),
    h("option", { value: "none" }, "no flow"),
    ...state.flows.map((flow) => h("option", { value: flow.id }, flowLabel(flow))),
  );
  if (chosen && !state.flows.some((f) => f.id === chosen)) gen.append(h("option", { value: chosen }, short(chosen)));
  gen.value = [...gen.options].some((o) => o.value === before) ? before : "";
}

function setFlowFilter(flowId) {
  state.filter.flowId = flowId;
  renderFlowChoices();
  if (flowId) $("gen-flow").value = flowId;
  resetGrid();
}

async function loadFlows(reset) {
  const epoch = state.epoch;
  if (reset) {
    state.flowsOffset = 0;
    $("flows-body").replaceChildren();
  }
  show($("flows-error"), false);
  try {
    const page = await api("GET", `/api/v1/flows?limit=50&offset=${state.flowsOffset}`);
    if (epoch !== state.epoch) return;
    state.flowsOffset += page.data.length;
    for (const flow of page.data) {
      const aliases = Object.keys(flow.aliases || {});
      $("flows-body").append(
        h(
          "tr",
          {},
          h("td", {}, h("a", { href: `#flow/${encodeURIComponent(flow.id)}` }, h("code", {}, short(flow.id)))),
          h("td", {}, when(flow.createdAt)),
          h("td", {}, String(flow.generationCount)),
          h("td", {}, String(flow.imageCount)),
          h("td", {}, aliases.length ? aliases.join(" ") : "—"),
        ),
      );
    }
    show($("flows-empty"), page.pagination.total === 0);
    show($("flows-more"), page.pagination.hasMore);
  } catch (error) {
    if (epoch === state.epoch) showError($("flows-error"), error);
  }
}

async function openFlow(id) {
  const epoch = state.epoch;
  state.flowView = { id, flow: null, images: [] };
  $("flow-title").replaceChildren("Flow ", h("code", {}, id));
  $("flow-facts").textContent = "Loading…";
  $("flow-images").replaceChildren();
  $("flow-aliases").replaceChildren();
  show($("flow-error"), false);
  let flow = null;
  try {
    flow = (await api("GET", `/api/v1/flows/${encodeURIComponent(id)}`)).data;
  } catch (error) {
    if (error.code !== "FLOW_NOT_FOUND") {
      showError($("flow-error"), error);
      $("flow-facts").textContent = "";
      return;
    }
  }
  let images;
  try {
    images = flow
      ? await all(`/api/v1/flows/${encodeURIComponent(id)}/images`)
      : await all(`/api/v1/images?flowId=${encodeURIComponent(id)}`);
    await ensureGenerations(images).catch(() => {});
  } catch (error) {
    if (epoch === state.epoch) showError($("flow-error"), error);
    return;
  }
  if (epoch !== state.epoch || !state.flowView || state.flowView.id !== id) return;
  images.reverse(); // in order: the first step first
  images.forEach(remember);
  state.flowView = { id, flow, images };
  $("flow-facts").textContent = flow
    ? `Created ${when(flow.createdAt)} · ${flow.generationCount} generations · ${flow.imageCount} images`
    : `No flow record yet (its id was announced by a generation); ${images.length} images carry it.`;
  $("flow-images").replaceChildren(...images.map((image) => tile(image)));
  show($("flow-images-empty"), images.length === 0);
  renderFlowAliases();
}

function renderFlowAliases() {
  const view = state.flowView;
  const entries = Object.entries((view.flow && view.flow.aliases) || {});
  const items = entries.map(([alias, imageId]) => {
    const image = state.known.get(imageId);
    const thumb = image ? h("img", { alt: altOf(image) }) : null;
    if (image) setImage(thumb, image, SMALL);
    return h(
      "li",
      {},
      h("code", {}, alias),
      image
        ? h("button", { type: "button", class: "thumb", "aria-label": `Open ${alias}`, onclick: (e) => openDetail(imageId, e.currentTarget) }, thumb)
        : h("span", { class: "muted" }, short(imageId)),
      h("button", { type: "button", "aria-label": `Remove flow alias ${alias}`, onclick: () => removeFlowAlias(alias) }, "Remove"),
    );
  });
  $("flow-aliases").replaceChildren(...items);
  show($("flow-aliases-empty"), items.length === 0);
  show($("flow-alias-form"), Boolean(view.flow) && view.images.length > 0);
  $("flow-alias-image").replaceChildren(
    ...view.images.map((image, i) => h("option", { value: image.id }, `${i + 1}. ${altOf(image).slice(0, 60)}`)),
  );
}

async function removeFlowAlias(alias) {
  const view = state.flowView;
  try {
    const flow = (await api("DELETE", `/api/v1/flows/${encodeURIComponent(view.id)}/aliases/${encodeURIComponent(alias)}`)).data;
    view.flow = flow;
    renderFlowAliases();
    announce(`Removed flow alias ${alias}.`);
  } catch (error) {
    showError($("flow-error"), error);
  }
}

async function setFlowAlias(event) {
  event.preventDefault();
  const view = state.flowView;
  const alias = withAt($("flow-alias-name").value);
  show($("flow-error"), false);
  if (!ALIAS_RE.test(alias)) {
    showError($("flow-error"), new Error("An alias is @ and then 1 to 49 letters, digits, _ or -."));
    return;
  }
  try {
    const body = { aliases: { [alias]: $("flow-alias-image").value } };
    view.flow = (await api("PUT", `/api/v1/flows/${encodeURIComponent(view.id)}/aliases`, { body })).data;
    $("flow-alias-name").value = "";
    renderFlowAliases();
    announce(`Set flow alias ${alias}.`);
  } catch (error) {
    showError($("flow-error"), error);
  }
}

// ---------------------------------------------------------------- references

function toggleRef(image) {
  const index = state.refs.findIndex((r) => r.id === image.id);
  if (index >= 0) {
    state.refs.splice(index, 1);
  } else {
    if (state.refs.length >= MAX_REFERENCES) {
      notice(`At most ${MAX_REFERENCES} reference images: remove one first.`);
      return;
    }
    state.refs.push(image);
  }
  renderRefs();
  const picked = index < 0;
  for (const button of document.querySelectorAll(`.tile[data-id="${CSS.escape(image.id)}"] .tile-ref`)) {
    button.setAttribute("aria-pressed", picked ? "true" : "false");
    button.textContent = picked ? "✓ ref" : "+ ref";
  }
  announce(picked ? "Added as a reference." : "Removed from the references.");
}

function renderRefs() {
  $("gen-refs").replaceChildren(
    ...state.refs.map((image) => {
      const img = h("img", { alt: altOf(image) });
      setImage(img, image, SMALL);
      return h(
        "li",
        {},
        img,
        h("button", { type: "button", "aria-label": `Remove reference: ${altOf(image)}`, onclick: () => toggleRef(image) }, "×"),
      );
    }),
  );
  if ($("detail").open && state.detail) updateRefButton();
}

// ---------------------------------------------------------------- generate

async function generate(event) {
  event.preventDefault();
  const error = $("gen-error");
  showError(error, null);
  const prompt = $("gen-prompt").value.trim();
  if (!prompt) {
    showError(error, new Error("Write a prompt first."));
    $("gen-prompt").focus();
    return;
  }
  const body = {
    prompt,
    aspectRatio: $("gen-ratio").value,
    autoEnhance: $("gen-enhance").checked,
    enhancementOptions: { template: $("gen-template").value },
  };
  const typed = $("gen-ref-aliases").value.split(/[\s,]+/).filter(Boolean).map(withAt);
  const references = [...state.refs.map((image) => image.id), ...typed];
  if (references.length) body.referenceImages = references;
  const flow = $("gen-flow").value;
  if (flow === "none") body.flowId = null;
  else if (flow) body.flowId = flow;
  const alias = withAt($("gen-alias").value);
  if (alias) {
    if (!ALIAS_RE.test(alias)) {
      showError(error, new Error("An alias is @ and then 1 to 49 letters, digits, _ or -."));
      $("gen-alias").focus();
      return;
    }
    body.alias = alias;
  }
  const submit = $("gen-submit");
  submit.disabled = true;
  try {
    const generation = (await api("POST", "/api/v1/generations", { body, headers: { Prefer: "respond-async" } })).data;
    $("gen-prompt").value = "";
    $("gen-alias").value = "";
    $("gen-ref-aliases").value = "";
    state.refs = [];
    renderRefs();
    for (const button of document.querySelectorAll(".tile-ref[aria-pressed='true']")) {
      button.setAttribute("aria-pressed", "false");
      button.textContent = "+ ref";
    }
    follow(generation, prompt);
  } catch (err) {
    showError(error, err);
  } finally {
    submit.disabled = false;
  }
}

/** Poll a generation until it succeeds or fails; its image then tops the grid. */
async function follow(generation, prompt) {
  const epoch = state.epoch;
  const text = h("p", {}, `Generating “${prompt}”…`);
  const job = h("li", { class: "job running" }, text);
  $("jobs").prepend(job);
  let current = generation;
  let delay = 300;
  let problems = 0;
  while (current.status === "pending" || current.status === "processing") {
    await sleep(delay);
    delay = Math.min(delay * 1.5, 2000);
    if (epoch !== state.epoch) return;
    try {
      current = (await api("GET", `/api/v1/generations/${encodeURIComponent(generation.id)}`)).data;
      problems = 0;
    } catch (error) {
      problems += 1;
      if (error.status === 404 || problems >= 10) {
        finishJob(job, "failed", `Could not follow “${prompt}”: ${describe(error)}`);
        return;
      }
      text.textContent = `Generating “${prompt}”… (${describe(error)}; trying again)`;
    }
  }
  if (epoch !== state.epoch) return;
  state.generations.set(current.id, current);
  if (current.status === "success" && current.outputImage) {
    const image = current.outputImage;
    prepend(image);
    const seconds = current.processingTimeMs ? ` in ${(current.processingTimeMs / 1000).toFixed(1)} s` : "";
    finishJob(job, "done", `Done${seconds}: “${prompt}”`, image);
  } else {
    const why = current.errorMessage || "the provider gave no reason.";
    finishJob(job, "failed", `Generation failed: “${prompt}”. ${sentence(why)}`);
  }
}

function finishJob(job, kind, message, image) {
  job.className = `job ${kind}`;
  const dismiss = h("button", { type: "button", onclick: () => job.remove(), "aria-label": "Dismiss" }, "×");
  const open = image
    ? h("button", { type: "button", onclick: (e) => openDetail(image.id, e.currentTarget) }, "Open")
    : null;
  job.replaceChildren(h("p", { role: kind === "failed" ? "alert" : null }, message), open, dismiss);
  if (kind !== "failed") announce(message); // a failure is an alert of its own
  if (kind === "done") setTimeout(() => job.isConnected && !job.contains(document.activeElement) && job.remove(), 15000);
}

async function upload(event) {
  event.preventDefault();
  const input = $("upload-file");
  const error = $("upload-error");
  showError(error, null);
  if (!input.files || !input.files.length) {
    showError(error, new Error("Choose a file first."));
    return;
  }
  const form = new FormData();
  form.append("file", input.files[0]);
  const flow = $("gen-flow").value;
  if (flow === "none") form.append("flowId", "null");
  else if (flow) form.append("flowId", flow);
  const button = event.submitter || $("upload-form").querySelector("button");
  button.disabled = true;
  try {
    const image = (await api("POST", "/api/v1/images/upload", { form })).data;
    input.value = "";
    prepend(image);
    announce("Uploaded.");
  } catch (err) {
    showError(error, err);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- the detail dialog

async function openDetail(id, opener) {
  const dialog = $("detail");
  const cached = state.known.get(id);
  state.detail = { image: cached || { id }, opener: opener || document.activeElement, generation: null, flow: null };
  showError($("detail-error"), null);
  $("detail-status").textContent = "";
  $("detail-facts").replaceChildren();
  if (cached) renderDetail();
  if (!dialog.open) dialog.showModal();
  $("detail-close").focus();
  try {
    const image = remember((await api("GET", `/api/v1/images/${encodeURIComponent(id)}`)).data);
    if (!state.detail || state.detail.image.id !== id) return;
    state.detail.image = image;
    renderDetail();
    const [generation, flow] = await Promise.all([
      image.generationId
        ? api("GET", `/api/v1/generations/${encodeURIComponent(image.generationId)}`).then((r) => r.data, () => null)
        : null,
      image.flowId ? api("GET", `/api/v1/flows/${encodeURIComponent(image.flowId)}`).then((r) => r.data, () => null) : null,
    ]);
    if (!state.detail || state.detail.image.id !== id) return;
    if (generation) state.generations.set(generation.id, generation);
    state.detail.generation = generation;
    state.detail.flow = flow;
    renderDetail();
  } catch (error) {
    showError($("detail-error"), error);
  }
}

function fact(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

function renderDetail() {
  const { image, generation, flow } = state.detail;
  if (!image.createdAt) return;
  const prompt = generation ? generation.prompt : promptOf(image);
  const original = generation ? generation.originalPrompt : null;
  const meta = (generation && generation.meta) || {};
  const alt = altOf(image);
  $("detail-title").textContent = image.alias ? `Image ${image.alias}` : `Image ${short(image.id)}`;
  const img = $("detail-img");
  img.alt = alt;
  imageSrc(image, LARGE).then((src) => {
    if (img.getAttribute("src") !== src) img.src = src;
  }, (error) => showError($("detail-error"), error));
  renderFocal(image);

  const flowAliases = flow
    ? Object.entries(flow.aliases || {}).filter(([, imageId]) => imageId === image.id).map(([a]) => a)
    : [];
  const facts = [
    ...fact("Prompt", prompt || (image.source === "uploaded" ? "— (uploaded)" : "—")),
    ...fact("Original prompt", original || "— (used as written)"),
    ...fact("Provider", meta.provider || (image.source === "uploaded" ? "— (uploaded)" : "—")),
    ...fact("Model", meta.model || "—"),
    ...fact("Size", `${image.width} × ${image.height} px · ${image.mimeType} · ${bytes(image.fileSize)}`),
    ...fact("Source", image.source),
    ...fact(
      "Aliases",
      image.alias ? h("code", {}, image.alias) : "no project alias",
      ...flowAliases.map((a) => [" · flow ", h("code", {}, a)]),
    ),
    ...fact("Focal point", image.focalPoint ? `x ${image.focalPoint.x}, y ${image.focalPoint.y}` : "centre (not set)"),
    ...fact("Created", when(image.createdAt)),
  ];
  if (image.generationId) {
    const details = generation
      ? [
          h("code", {}, short(image.generationId)),
          ` · ${generation.status}`,
          generation.processingTimeMs != null ? ` · ${(generation.processingTimeMs / 1000).toFixed(1)} s` : "",
          generation.retryCount ? ` · ${generation.retryCount} retries` : "",
          ` · ${generation.aspectRatio}`,
        ]
      : [h("code", {}, short(image.generationId))];
    facts.push(...fact("Generation", ...details));
    const refs = generation ? generation.referenceImages || [] : [];
    if (refs.length) {
      const list = h(
        "ul",
        {},
        refs.map((ref) => {
          remember(ref);
          const thumb = h("img", { alt: `Reference: ${altOf(ref)}` });
          setImage(thumb, ref, SMALL);
          return h("li", {}, h("button", { type: "button", class: "ref-thumb", onclick: () => openDetail(ref.id, state.detail.opener) }, thumb));
        }),
      );
      facts.push(...fact("References", list));
    }
  } else {
    facts.push(...fact("Generation", image.source === "uploaded" ? "— (uploaded)" : "— (deleted; the image kept its alias)"));
  }
  if (image.flowId) {
    facts.push(
      ...fact("Flow", h("a", { href: `#flow/${encodeURIComponent(image.flowId)}`, onclick: () => $("detail").close() }, h("code", {}, short(image.flowId)))),
    );
  } else {
    facts.push(...fact("Flow", "none"));
  }
  facts.push(...fact("URL", h("a", { href: image.storageUrl, target: "_blank", rel: "noopener noreferrer" }, image.storageUrl)));
  $("detail-facts").replaceChildren(...facts);
  if (document.activeElement !== $("alias-input")) $("alias-input").value = image.alias || "";
  show($("alias-remove"), Boolean(image.alias));
  show($("detail-flow"), Boolean(image.flowId));
  show($("detail-delete-generation"), Boolean(image.generationId));
  updateRefButton();
}

function updateRefButton() {
  const picked = state.refs.some((r) => r.id === state.detail.image.id);
  const button = $("detail-ref");
  button.textContent = picked ? "Remove from references" : "Use as reference";
  button.setAttribute("aria-pressed", picked ? "true" : "false");
}

function renderFocal(image) {
  const marker = $("focal-marker");
  const point = image.focalPoint;
  if (point) {
    marker.style.left = `${point.x * 100}%`;
    marker.style.top = `${point.y * 100}%`;
  }
  show(marker, Boolean(point));
  if (document.activeElement !== $("focal-x") && document.activeElement !== $("focal-y")) {
    $("focal-x").value = point ? point.x : "";
    $("focal-y").value = point ? point.y : "";
  }
}

async function updateImage(change, done) {
  const detail = state.detail;
  showError($("detail-error"), null);
  try {
    const image = (await change(detail.image)).data;
    if (state.detail !== detail) return;
    detail.image = image;
    const moved = aliasMoved(image);
    refreshTiles(image);
    renderDetail();
    const message = typeof done === "function" ? done(image, moved) : done;
    $("detail-status").textContent = message;
  } catch (error) {
    if (state.detail === detail) showError($("detail-error"), error);
  }
}

function setFocal(x, y) {
  const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 1000) / 1000;
  const focalPoint = x === null ? null : { x: round(x), y: round(y) };
  return updateImage(
    (image) => api("PUT", `/api/v1/images/${encodeURIComponent(image.id)}`, { body: { focalPoint } }),
    focalPoint ? `Focal point set to x ${focalPoint.x}, y ${focalPoint.y}.` : "Focal point cleared: crops are centred.",
  );
}

function onImageClick(event) {
  const rect = $("detail-img").getBoundingClientRect();
  if (!rect.width || !rect.height) return;
  setFocal((event.clientX - rect.left) / rect.width, (event.clientY - rect.top) / rect.height);
}

function onFocalForm(event) {
  event.preventDefault();
  const x = Number.parseFloat($("focal-x").value);
  const y = Number.parseFloat($("focal-y").value);
  if (!(x >= 0 && x <= 1 && y >= 0 && y <= 1)) {
    showError($("detail-error"), new Error("The focal point's x and y are numbers from 0 to 1."));
    return;
  }
  setFocal(x, y);
}

function assignAlias(event) {
  event.preventDefault();
  const alias = withAt($("alias-input").value);
  if (!alias) {
    removeAlias();
    return;
  }
  updateImage(
    (image) => api("PUT", `/api/v1/images/${encodeURIComponent(image.id)}/alias`, { body: { alias } }),
    (image, moved) => (moved ? `Moved ${image.alias} to this image.` : `Assigned ${image.alias}.`),
  );
}

function removeAlias() {
  const had = state.detail.image.alias;
  updateImage(
    (image) => api("PUT", `/api/v1/images/${encodeURIComponent(image.id)}/alias`, { body: { alias: null } }),
    `Removed ${had || "the alias"}.`,
  );
}

async function deleteImage() {
  const { image, opener } = state.detail;
  const ok = await confirmAction(
    "Delete this image?",
    `“${altOf(image)}” is removed from storage, from every flow's aliases and from the generations that used it. This cannot be undone.`,
    "Delete image",
  );
  if (!ok) return;
  try {
    await api("DELETE", `/api/v1/images/${encodeURIComponent(image.id)}`);
  } catch (error) {
    showError($("detail-error"), error);
    return;
  }
  const next = removeTiles(image.id);
  closeDetail(opener && opener.isConnected ? opener : next);
  announce("Image deleted.");
}

async function deleteGeneration() {
  const { image, opener } = state.detail;
  const keeps = Boolean(image.alias);
  const ok = await confirmAction(
    "Delete the generation that made this image?",
    keeps
      ? `The image keeps its alias ${image.alias}, so it stays (without a generation).`
      : "Its image is deleted with it. This cannot be undone.",
    "Delete generation",
  );
  if (!ok) return;
  try {
    await api("DELETE", `/api/v1/generations/${encodeURIComponent(image.generationId)}`);
  } catch (error) {
    showError($("detail-error"), error);
    return;
  }
  state.generations.delete(image.generationId);
  if (keeps) {
    const kept = { ...image, generationId: null };
    state.detail.image = kept;
    state.detail.generation = null;
    refreshTiles(kept);
    renderDetail();
    $("detail-status").textContent = "Generation deleted; the image stays.";
    return;
  }
  const next = removeTiles(image.id);
  closeDetail(opener && opener.isConnected ? opener : next);
  announce("Generation and image deleted.");
}

function closeDetail(focusTarget) {
  if (state.detail) state.detail.opener = focusTarget;
  $("detail").close();
}

function onDetailClosed() {
  const opener = state.detail && state.detail.opener;
  state.detail = null;
  $("detail-img").removeAttribute("src");
  const target = opener && opener.isConnected ? opener : $("main");
  target.focus();
}

/** A confirmation in a modal dialog: true when confirmed, false on Cancel or Escape. */
function confirmAction(title, text, okLabel) {
  const dialog = $("confirm");
  const before = document.activeElement;
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    let answer = false;
    const ok = () => {
      answer = true;
      dialog.close();
    };
    const cancel = () => dialog.close();
    const closed = () => {
      $("confirm-ok").removeEventListener("click", ok);
      $("confirm-cancel").removeEventListener("click", cancel);
      if (before && before.isConnected && !answer) before.focus();
      resolve(answer);
    };
    $("confirm-ok").addEventListener("click", ok);
    $("confirm-cancel").addEventListener("click", cancel);
    dialog.addEventListener("close", closed, { once: true });
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

// ---------------------------------------------------------------- live URLs

async function buildLive(event) {
  event.preventDefault();
  const error = $("live-error");
  showError(error, null);
  const scope = $("live-scope").value.trim();
  const prompt = $("live-prompt").value.trim();
  if (!SCOPE_RE.test(scope)) {
    showError(error, new Error("A scope is 1 to 64 letters, digits, _ or -."));
    $("live-scope").focus();
    return;
  }
  if (!prompt) {
    showError(error, new Error("Write a prompt first."));
    $("live-prompt").focus();
    return;
  }
  const query = { prompt };
  if ($("live-ratio").value !== "16:9") query.aspectRatio = $("live-ratio").value;
  if (!$("live-enhance").checked) query.autoEnhance = "false";
  else if ($("live-template").value !== "general") query.template = $("live-template").value;
  for (const side of ["w", "h"]) {
    const raw = $(`live-${side}`).value.trim();
    if (!raw) continue;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > 4096) {
      showError(error, new Error(`The ${side === "w" ? "width" : "height"} is a whole number from 1 to 4096.`));
      return;
    }
    query[side] = String(n);
  }
  if ($("live-fit").value) query.fit = $("live-fit").value;
  if ($("live-format").value) query.format = $("live-format").value;
  const path = `${projectPath()}/live/${encodeURIComponent(scope)}`;
  let url;
  let local;
  let mode;
  try {
    // the project's signing mode may have changed since sign-in
    state.project = (await api("GET", "/api/v1/project")).data;
    mode = state.project.signedUrls;
    if (mode && mode !== "off") {
      const signed = (await api("POST", "/api/v1/signed-urls", { body: { path, query } })).data;
      url = signed.url;
      local = signed.path;
    } else {
      local = `${path}?${new URLSearchParams(query).toString().replace(/\+/g, "%20")}`;
      url = state.publicBase + local;
    }
  } catch (err) {
    showError(error, err);
    return;
  }
  show($("live-result"));
  $("live-signed").textContent =
    mode && mode !== "off"
      ? `Signed: this project requires signed URLs (signedUrls: ${mode}). Changing the URL breaks its signature.`
      : "Not signed: this project does not require signatures (signedUrls: off).";
  $("live-url").value = url;
  $("live-html").value = `<img src="${url.replace(/&/g, "&amp;").replace(/"/g, "&quot;")}" alt="${prompt.replace(/&/g, "&amp;").replace(/"/g, "&quot;")}">`;
  $("live-copied").textContent = "";
  preview(local, prompt);
}

/** Fetch the live URL and show it: the image, or the server's error in words. */
async function preview(local, prompt) {
  const img = $("live-preview");
  const status = $("live-status");
  const error = $("live-preview-error");
  showError(error, null);
  show(img, false);
  status.textContent = "Loading… (a new prompt is generated first)";
  let response;
  const started = performance.now();
  try {
    response = await fetch(local, {
      credentials: "omit",
      headers: { Accept: "application/json, image/avif, image/webp, image/png, image/jpeg;q=0.9" },
    });
  } catch (err) {
    status.textContent = "";
    showError(error, new ApiError(0, "NETWORK_ERROR", `the appliance could not be reached (${err.message}).`));
    return;
  }
  if (!response.ok) {
    let message = `the live URL answered ${response.status} ${response.statusText}.`;
    let code = `HTTP_${response.status}`;
    try {
      const payload = await response.json();
      if (payload && payload.error) ({ message, code } = payload.error);
    } catch {
      // not JSON: keep the status line
    }
    status.textContent = "";
    showError(error, new ApiError(response.status, code, message));
    loadScopes();
    return;
  }
  // read it all (a MISS is generated on the way), then let an <img> load the URL
  // itself, as a page would: now a HIT from the cache
  const blob = await response.blob();
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const cache = response.headers.get("X-Cache-Status") || "";
  img.alt = prompt;
  img.onload = () => {
    const how = cache === "HIT" ? "from the cache (HIT)" : cache === "MISS" ? "newly generated (MISS)" : "";
    status.textContent = `${img.naturalWidth} × ${img.naturalHeight} px · ${blob.type} · ${bytes(blob.size)} · ${how} in ${seconds} s`;
  };
  img.onerror = () => showError(error, new Error("The image did not load in the preview; open the URL to see why."));
  img.removeAttribute("src");
  img.src = local;
  show(img);
  loadScopes();
}

async function copy(text, what) {
  const out = $("live-copied");
  try {
    if (!navigator.clipboard || !window.isSecureContext) throw new Error("no clipboard API");
    await navigator.clipboard.writeText(text);
    out.textContent = `Copied the ${what}.`;
    return;
  } catch {
    // fall back to the selection, for plain-HTTP pages on another machine
  }
  const field = what === "URL" ? $("live-url") : $("live-html");
  field.focus();
  field.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  out.textContent = copied ? `Copied the ${what}.` : `The ${what} is selected: press Ctrl+C (⌘C) to copy it.`;
}

async function copyImageUrl() {
  const { image } = state.detail;
  try {
    if (!navigator.clipboard || !window.isSecureContext) throw new Error("no clipboard API");
    await navigator.clipboard.writeText(image.storageUrl);
    $("detail-status").textContent = "Copied the image URL.";
  } catch {
    $("detail-status").textContent = `Image URL: ${image.storageUrl}`;
  }
}

async function loadScopes() {
  const epoch = state.epoch;
  show($("scopes-error"), false);
  const p = state.project;
  $("scopes-policy").textContent = p.allowNewLiveScopes
    ? `A new scope is made by its first live URL, with a limit of ${p.newLiveScopesGenerationLimit} images.`
    : "New scopes are off for this project: live URLs work in the scopes below only.";
  try {
    const scopes = await all("/api/v1/live/scopes", 300);
    if (epoch !== state.epoch) return;
    $("live-scope-list").replaceChildren(...scopes.map((s) => h("option", { value: s.slug })));
    $("scopes-body").replaceChildren(
      ...scopes.map((s) =>
        h(
          "tr",
          {},
          h(
            "td",
            {},
            h("button", { type: "button", "aria-label": `Use scope ${s.slug}`, onclick: () => { $("live-scope").value = s.slug; $("live-prompt").focus(); } }, s.slug),
          ),
          h("td", {}, `${s.currentGenerations} / ${s.newGenerationsLimit}`),
          h("td", {}, s.allowNewGenerations ? (s.currentGenerations >= s.newGenerationsLimit ? "limit reached" : "allowed") : "off"),
          h("td", {}, when(s.lastGeneratedAt)),
        ),
      ),
    );
    show($("scopes-empty"), scopes.length === 0);
  } catch (error) {
    if (epoch === state.epoch) showError($("scopes-error"), error);
  }
}

// ---------------------------------------------------------------- wiring

function wireEvents() {
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("notice-close").addEventListener("click", () => show($("notice"), false));
  window.addEventListener("hashchange", route);

  $("generate-form").addEventListener("submit", generate);
  $("gen-prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("generate-form").requestSubmit();
  });
  $("upload-form").addEventListener("submit", upload);
  $("filter-flow").addEventListener("change", (event) => setFlowFilter(event.target.value));
  $("filter-source").addEventListener("change", (event) => {
    state.filter.source = event.target.value;
    resetGrid();
  });
  $("grid-more").addEventListener("click", loadMore);
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMore();
  }, { rootMargin: "600px" }).observe($("grid-sentinel"));

  $("flows-more").addEventListener("click", () => loadFlows(false));
  $("flow-filter").addEventListener("click", () => {
    const id = state.flowView && state.flowView.id;
    location.hash = "#images";
    if (id) setFlowFilter(id);
  });
  $("flow-use").addEventListener("click", () => {
    const id = state.flowView && state.flowView.id;
    if (id && ![...$("gen-flow").options].some((o) => o.value === id)) $("gen-flow").append(h("option", { value: id }, short(id)));
    location.hash = "#images";
    if (id) $("gen-flow").value = id;
    $("gen-prompt").focus();
  });
  $("flow-alias-form").addEventListener("submit", setFlowAlias);

  const detail = $("detail");
  detail.addEventListener("close", onDetailClosed);
  detail.addEventListener("click", (event) => {
    if (event.target !== detail) return;
    const r = detail.getBoundingClientRect();
    const outside = event.clientX < r.left || event.clientX > r.right || event.clientY < r.top || event.clientY > r.bottom;
    if (outside) detail.close(); // a click on the backdrop
  });
  $("detail-close").addEventListener("click", () => detail.close());
  $("detail-img").addEventListener("click", onImageClick);
  $("focal-form").addEventListener("submit", onFocalForm);
  $("focal-clear").addEventListener("click", () => setFocal(null, null));
  $("alias-form").addEventListener("submit", assignAlias);
  $("alias-remove").addEventListener("click", removeAlias);
  $("detail-ref").addEventListener("click", () => toggleRef(state.detail.image));
  $("detail-flow").addEventListener("click", () => {
    const id = state.detail.image.flowId;
    detail.close();
    location.hash = `#flow/${encodeURIComponent(id)}`;
  });
  $("detail-copy").addEventListener("click", copyImageUrl);
  $("detail-delete").addEventListener("click", deleteImage);
  $("detail-delete-generation").addEventListener("click", deleteGeneration);

  $("live-form").addEventListener("submit", buildLive);
  $("live-copy").addEventListener("click", () => copy($("live-url").value, "URL"));
  $("live-copy-html").addEventListener("click", () => copy($("live-html").value, "HTML"));
}

boot();
