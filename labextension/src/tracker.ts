/**
 * Wires notebooks and their kernels to carbonlab models: one `PanelCarbon` per notebook panel,
 * and a `CarbonTracker` that follows the active notebook.
 *
 * JupyterLab edge cases handled here:
 *  - The comm target lives on a `KernelConnection`. A kernel restart keeps the connection and its
 *    target registry (`_clearKernelState` disposes comms, not targets), but a kernel *change*
 *    creates a new connection, so the target is registered again on `kernelChanged`.
 *  - Comms open at a restart are disposed without a close message: on `restarting`,
 *    `autorestarting` or `dead` the open runs are marked interrupted.
 *  - `kernel.status` is never used for "running" (it flickers to idle mid-cell); the comm and
 *    `NotebookActions` are.
 *  - The comm close normally arrives before the execute reply (the kernel closes it in
 *    post_run_cell). If it never does (another frontend without carbonlab closed the comm,
 *    the kernel side failed), the run is expired a few seconds after the reply.
 *  - The kernel cannot see which comm targets a frontend registered, so once per kernel
 *    connection where carbonlab runs (its first `carbonlab.cell` comm, or a successful "load")
 *    the panel opens a `carbonlab.hello` comm and keeps it open: while it is, the kernel keeps
 *    its in-cell widget small. A restart disposes it; the next cell comm opens a new one.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import {
  INotebookTracker,
  Notebook,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import type { ICodeCellModel } from '@jupyterlab/cells';
import type * as nbformat from '@jupyterlab/nbformat';

import { formatCo2, formatDuration, formatEnergy } from './format';
import { untrackCommsOnSubshells } from './kernelstatus';
import {
  helloRunKey,
  IRun,
  NotebookCarbonModel,
  runCo2eG,
  runDurationS,
  runEnergyJ
} from './model';
import {
  COMM_TARGET,
  forwardedRunId,
  ANNOUNCE_TARGET,
  HELLO_TARGET,
  helloData,
  LIVE_MIMETYPE,
  visibilityMsg,
  ISavedRun,
  LOAD_EXTENSION_CODE,
  METADATA_KEY,
  PROTOCOL_VERSION,
  PYTHON_MODULE
} from './protocol';

/** Seconds to wait after an execute reply for a comm close that is still missing. */
const SUMMARY_GRACE_MS = 5000;

/** How long the hello waits for its comm's subshell before it is sent anyway. */
const HELLO_SUBSHELL_WAIT_MS = 2000;

/** How long the kernel may take to create the hello's own subshell (a busy machine is slow). */
const OWN_SUBSHELL_WAIT_MS = 10000;

/** How long the hello waits for the kernel info before it takes its own subshell. */
const HELLO_INFO_WAIT_MS = 1000;

/** Outcome of loading the IPython extension from the sidebar. */
export interface ILoadResult {
  ok: boolean;
  /** Why it failed; plain text for the sidebar. */
  reason: 'no-kernel' | 'not-python' | 'not-installed' | 'error' | null;
  /** Text from the kernel (error name and value, or what the magic printed). */
  detail: string;
}

/** The kernel of a notebook as the sidebar describes it. */
export interface IKernelState {
  /** No kernel, starting, or connected. */
  phase: 'none' | 'starting' | 'ready';
  /** `language_info.name` from the kernel info, once known. */
  language: string | null;
  /** Display name of the kernel spec. */
  displayName: string;
}

/**
 * carbonlab state of one notebook panel: its model, its kernel's comm target, its cells' metadata.
 */
export class PanelCarbon implements IDisposable {
  constructor(panel: NotebookPanel, options: PanelCarbon.IOptions) {
    this.panel = panel;
    this.model = new NotebookCarbonModel();
    this._writeMetadata = options.writeMetadata;
    this._visible = options.visible ?? false;
    const ctx = panel.sessionContext;
    ctx.kernelChanged.connect(this._onKernelChanged, this);
    ctx.statusChanged.connect(this._onStatusChanged, this);
    // The first kernel may be set before or after `ready`; registering twice is harmless.
    void ctx.ready.then(() => {
      if (!this.isDisposed) {
        this._attach(ctx.session?.kernel ?? null);
      }
    });
    void panel.context.ready.then(() => {
      if (!this.isDisposed) {
        this._restoreFromMetadata();
      }
    });
    panel.content.model?.cells.changed.connect(this._onCellsChanged, this);
  }

  readonly panel: NotebookPanel;
  readonly model: NotebookCarbonModel;

  /** Emits when the kernel or the cell order changed (not on measurements: see model.changed). */
  get stateChanged(): ISignal<this, void> {
    return this._stateChanged;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Whether finished runs are written into cell metadata. */
  set writeMetadata(value: boolean) {
    this._writeMetadata = value;
  }

  /** Whether the carbonlab panel is showing; the kernel is told (hello v2). */
  set visible(value: boolean) {
    if (value === this._visible) {
      return;
    }
    this._visible = value;
    const comm = this._hello;
    if (comm && this._helloOpen && !comm.isDisposed) {
      try {
        comm.send(visibilityMsg(value));
      } catch {
        // The kernel is gone; the next hello says it.
      }
    }
  }

  /** The notebook's kernel, as far as the sidebar cares. */
  get kernelState(): IKernelState {
    const ctx = this.panel.sessionContext;
    const kernel = ctx.session?.kernel ?? null;
    return {
      phase: kernel ? (this._language !== null ? 'ready' : 'starting') : 'none',
      language: this._language,
      displayName: ctx.kernelDisplayName
    };
  }

  /** Cell ids in notebook order. */
  cellOrder(): string[] {
    const cells = this.panel.content.model?.cells;
    const ids: string[] = [];
    if (cells) {
      for (let i = 0; i < cells.length; i++) {
        ids.push(cells.get(i).id);
      }
    }
    return ids;
  }

  /** Activate and scroll to a cell; false when it is no longer in the notebook. */
  async scrollTo(cellId: string): Promise<boolean> {
    const nb = this.panel.content;
    const index = nb.widgets.findIndex(w => w.model.id === cellId);
    if (index < 0) {
      return false;
    }
    nb.activeCellIndex = index;
    await nb.scrollToCell(nb.widgets[index], 'center');
    return true;
  }

  /**
   * Run one `%carbon ...` line magic in the kernel, silently (no output in any cell, no history),
   * for the commands. Resolves to what the magic printed, or the error; never rejects.
   */
  async runCarbonMagic(line: string): Promise<{ ok: boolean; text: string }> {
    const kernel = this.panel.sessionContext.session?.kernel;
    if (!kernel) {
      return { ok: false, text: 'This notebook has no kernel.' };
    }
    const future = kernel.requestExecute({
      // The line is passed as a Python string literal (JSON is a subset here), never spliced.
      code: `get_ipython().run_line_magic('carbon', ${JSON.stringify(line)})`,
      silent: true,
      store_history: false,
      stop_on_error: false
    });
    const printed: string[] = [];
    future.onIOPub = (msg: KernelMessage.IIOPubMessage) => {
      if (KernelMessage.isStreamMsg(msg)) {
        printed.push(msg.content.text);
      }
    };
    try {
      const reply = await future.done;
      const content = reply.content;
      if (content.status === 'error') {
        return { ok: false, text: `${content.ename}: ${content.evalue}` };
      }
      return { ok: content.status === 'ok', text: printed.join('').trim() };
    } catch (reason) {
      return { ok: false, text: String(reason) };
    }
  }

  /**
   * Load the IPython extension in the kernel, silently (no output in any cell, no history).
   * Checks the kernel's language first, then the execute reply.
   */
  async loadExtension(): Promise<ILoadResult> {
    const kernel = this.panel.sessionContext.session?.kernel;
    if (!kernel) {
      return { ok: false, reason: 'no-kernel', detail: '' };
    }
    const info = await kernel.info;
    this._setLanguage(info.language_info?.name ?? null);
    if (this._language !== 'python') {
      return { ok: false, reason: 'not-python', detail: this._language ?? '' };
    }
    const future = kernel.requestExecute({
      code: LOAD_EXTENSION_CODE,
      silent: true,
      store_history: false,
      stop_on_error: false
    });
    // `%load_ext` reports some failures by printing, not raising ("... is not an IPython
    // extension"): keep what it printed, as text.
    const printed: string[] = [];
    future.onIOPub = (msg: KernelMessage.IIOPubMessage) => {
      if (KernelMessage.isStreamMsg(msg)) {
        printed.push(msg.content.text);
      } else if (KernelMessage.isErrorMsg(msg)) {
        printed.push(`${msg.content.ename}: ${msg.content.evalue}`);
      }
    };
    const reply = await future.done;
    const content = reply.content;
    if (content.status === 'error') {
      // "No module named 'carbonlab'" (or a submodule of it): not installed where the kernel runs.
      const notInstalled =
        content.ename === 'ModuleNotFoundError' &&
        content.evalue.includes(PYTHON_MODULE);
      return {
        ok: false,
        reason: notInstalled ? 'not-installed' : 'error',
        detail: `${content.ename}: ${content.evalue}`
      };
    }
    if (content.status !== 'ok') {
      return { ok: false, reason: 'error', detail: content.status };
    }
    const text = printed.join('').trim();
    if (/not an IPython extension/i.test(text)) {
      return { ok: false, reason: 'error', detail: text };
    }
    this.model.active = true;
    void this._sayHello();
    return { ok: true, reason: null, detail: text };
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._attach(null);
    for (const t of this._timers) {
      clearTimeout(t);
    }
    this._timers.clear();
    Signal.clearData(this);
  }

  /** Called by the tracker for this panel's notebook. */
  onScheduled(cellId: string): void {
    this.model.scheduled(cellId);
  }

  /** Called by the tracker for this panel's notebook. */
  onExecuted(cellId: string, success: boolean): void {
    const open = this.model.executed(cellId, success);
    if (open) {
      this._expireLater(open);
    }
  }

  private _expireLater(run: IRun): void {
    const timer = setTimeout(() => {
      this._timers.delete(timer);
      this.model.expire(run, 'no summary arrived after the cell finished');
    }, SUMMARY_GRACE_MS);
    this._timers.add(timer);
  }

  private _attach(kernel: Kernel.IKernelConnection | null): void {
    if (kernel === this._kernel) {
      return;
    }
    if (this._kernel && !this._kernel.isDisposed) {
      this._kernel.removeCommTarget(COMM_TARGET, this._onCommOpen);
      this._kernel.removeCommTarget(ANNOUNCE_TARGET, this._onAnnounce);
    }
    this._closeHello();
    this._kernel = kernel;
    this._setLanguage(null);
    if (kernel) {
      kernel.registerCommTarget(COMM_TARGET, this._onCommOpen);
      kernel.registerCommTarget(ANNOUNCE_TARGET, this._onAnnounce);
      this._whenInfo(kernel);
      // The kernel info waits behind a running cell (after a reload mid-run): the kernel spec,
      // from the server, says at once whether it is a Python kernel worth a hello.
      void kernel.spec.then(
        spec => {
          if (
            kernel === this._kernel &&
            (spec?.language ?? '').toLowerCase() === 'python'
          ) {
            void this._sayHello();
          }
        },
        () => undefined
      );
    }
    this._stateChanged.emit();
  }

  /**
   * Learn the kernel's language; in a Python kernel say hello at once: where carbonlab runs (the
   * page was reloaded, the notebook reopened) it answers with this notebook's runs and the run
   * in flight; where it does not, the kernel closes the comm (no such target) and the next
   * carbonlab comm says hello again.
   */
  private _whenInfo(kernel: Kernel.IKernelConnection): void {
    void kernel.info.then(
      info => {
        try {
          untrackCommsOnSubshells(kernel); // see kernelstatus.ts: the host's busy indicator
        } catch (reason) {
          console.warn('carbonlab: could not untrack subshell comms', reason);
        }
        if (kernel === this._kernel) {
          const language = info.language_info?.name ?? '';
          this._setLanguage(language);
          if (language === 'python') {
            void this._sayHello();
          }
        }
      },
      () => undefined
    );
  }

  private _setLanguage(language: string | null): void {
    if (language !== this._language) {
      this._language = language;
      this._stateChanged.emit();
    }
  }

  private _onKernelChanged(
    _: ISessionContext,
    args: { newValue: Kernel.IKernelConnection | null }
  ): void {
    this._settleLiveOutputs('the kernel changed');
    this.model.interruptAll('the kernel changed');
    this._attach(args.newValue);
  }

  private _onStatusChanged(_: ISessionContext, status: Kernel.Status): void {
    if (
      status === 'restarting' ||
      status === 'autorestarting' ||
      status === 'dead'
    ) {
      const note = `the kernel was ${status === 'dead' ? 'dead' : 'restarted'}`;
      this._settleLiveOutputs(note);
      this.model.interruptAll(note);
      // The restart disposes the connection's comms (without a close): say hello again later.
      this._hello = null;
      this._setLanguage(null);
      // A restart keeps the connection; its info is fetched again once it is back.
      const kernel = this._kernel;
      if (kernel && status !== 'dead') {
        this._whenInfo(kernel);
      }
    }
  }

  /**
   * The kernel restarted, died or changed: a live widget still in a cell's output will never get
   * its final update, and its model is gone (a saved notebook would show "Error displaying
   * widget: model not found"). Replace every such output (marked by LIVE_MIMETYPE) by a static
   * summary of the run as far as it went: text/plain and text/html, rendered without a kernel.
   */
  private _settleLiveOutputs(note: string): void {
    const cells = this.panel.content.model?.cells;
    if (!cells) {
      return;
    }
    const runs = new Map<string, IRun>();
    for (const rec of this.model.rows([])) {
      for (const r of rec.runs) {
        runs.set(r.runId, r);
      }
    }
    for (let i = 0; i < cells.length; i++) {
      const cell = cells.get(i);
      if (cell.type !== 'code') {
        continue;
      }
      const outputs = (cell as ICodeCellModel).outputs;
      for (let j = 0; j < outputs.length; j++) {
        const out = outputs.get(j);
        const marker = out.data[LIVE_MIMETYPE] as
          { run_id?: unknown; label?: unknown } | undefined;
        if (!marker || typeof marker !== 'object') {
          continue;
        }
        const runId = typeof marker.run_id === 'string' ? marker.run_id : '';
        const label = typeof marker.label === 'string' ? marker.label : '';
        const text = interruptedText(label, runs.get(runId) ?? null, note);
        const escaped = text
          .replace(/&/g, '&amp;')
          .replace(/</g, '&lt;')
          .replace(/>/g, '&gt;');
        const replacement: nbformat.IDisplayData = {
          output_type: 'display_data',
          data: {
            'text/plain': text,
            'text/html':
              '<div class="carbonlab-summary carbonlab-interrupted" style="font-family:' +
              'var(--jp-code-font-family,monospace);font-size:12px;border-left:3px solid ' +
              `#b26a00;padding:2px 8px;margin:2px 0">${escaped}</div>`
          },
          metadata: {}
        };
        try {
          outputs.set(j, replacement);
        } catch (reason) {
          console.warn('carbonlab: could not replace a live output', reason);
        }
      }
    }
  }

  private _onCellsChanged(): void {
    this._stateChanged.emit();
  }

  // An arrow property so the same function is given to register and remove.
  /** carbonlab was just loaded in the kernel (`%load_ext` in a cell): say hello now. */
  private _onAnnounce = (): void => {
    try {
      this.model.active = true;
      // A hello already open was to an earlier load (`%unload_ext`, then `%load_ext`): that
      // kernel-side listener is gone, so say it again.
      this._closeHello();
      void this._sayHello();
    } catch (reason) {
      console.warn('carbonlab: could not answer the kernel', reason);
    }
  };

  private _onCommOpen = (
    comm: Kernel.IComm,
    msg: KernelMessage.ICommOpenMsg
  ): void => {
    // Never throw here: JupyterLab closes the comm (for every client) when a target throws.
    try {
      const run = this.model.commOpen(comm.commId, msg.content.data);
      if (!run) {
        return;
      }
      void this._sayHello();
      comm.onMsg = m => {
        this.model.commMsg(comm.commId, m.content.data);
      };
      comm.onClose = m => {
        const done = this.model.commClose(comm.commId, m.content.data);
        if (done?.measurement && this._writeMetadata) {
          this._save(done);
        }
      };
    } catch (reason) {
      console.error('carbonlab: could not handle a cell comm', reason);
    }
  };

  /** Tell the kernel this sidebar shows its cells (once per kernel connection; see HELLO_TARGET). */
  private async _sayHello(): Promise<void> {
    const kernel = this._kernel;
    if (!kernel || kernel.isDisposed || this._hello) {
      return;
    }
    let comm: Kernel.IComm;
    try {
      comm = kernel.createComm(HELLO_TARGET);
    } catch (reason) {
      console.warn(
        'carbonlab: could not tell the kernel about the sidebar',
        reason
      );
      return;
    }
    this._hello = comm;
    this._helloOpen = false;
    comm.onClose = () => {
      if (this._hello === comm) {
        this._hello = null;
        this._helloOpen = false;
      }
    };
    comm.onMsg = m => this._onHelloMsg(m.content.data);
    // After a page reload mid-run the kernel info (and with it JupyterLab's knowledge of
    // subshells) waits behind the running cell: open the hello over a subshell of our own then,
    // so the kernel answers now with the run in flight.
    const infoKnown = await Promise.race([
      kernel.info.then(
        () => true,
        () => true
      ),
      new Promise<boolean>(resolve =>
        setTimeout(() => resolve(false), HELLO_INFO_WAIT_MS)
      )
    ]);
    if (!infoKnown && (await this._helloOverOwnSubshell(kernel, comm))) {
      return;
    }
    // Where the kernel has subshells (ipykernel 7), JupyterLab sends a comm's messages on one,
    // so the hello is handled even while a cell runs, but only once that subshell exists: sent
    // before, it would wait behind the running cell on the main shell.
    const started = (comm as unknown as { subshellStarted?: Promise<void> })
      .subshellStarted;
    if (
      started &&
      kernel.supportsSubshells &&
      String(comm.commsOverSubshells) !== 'disabled'
    ) {
      await Promise.race([
        started.catch(() => undefined),
        new Promise(resolve => setTimeout(resolve, HELLO_SUBSHELL_WAIT_MS))
      ]);
    }
    if (this._hello !== comm || comm.isDisposed || kernel.isDisposed) {
      return;
    }
    try {
      comm.open(helloData(this._visible));
      this._helloOpen = true;
    } catch (reason) {
      this._hello = null;
      console.warn(
        'carbonlab: could not tell the kernel about the sidebar',
        reason
      );
    }
  }

  /**
   * Open the hello comm over a subshell created here (JEP 91, control channel), for a kernel
   * whose main shell is busy. False (nothing sent) where the kernel has no subshells.
   */
  private async _helloOverOwnSubshell(
    kernel: Kernel.IKernelConnection,
    comm: Kernel.IComm
  ): Promise<boolean> {
    try {
      const req = KernelMessage.createMessage({
        msgType: 'create_subshell_request',
        channel: 'control',
        username: kernel.username,
        session: kernel.clientId,
        content: {}
      } as any);
      const future = kernel.sendControlMessage(req as any, true, true);
      const reply = (await Promise.race([
        future.done,
        new Promise(resolve =>
          setTimeout(() => resolve(null), OWN_SUBSHELL_WAIT_MS)
        )
      ])) as { content?: { subshell_id?: unknown } } | null;
      const sid = reply?.content?.subshell_id;
      if (
        typeof sid !== 'string' ||
        this._hello !== comm ||
        kernel.isDisposed
      ) {
        if (reply === null) {
          future.dispose();
        }
        return false;
      }
      const open = KernelMessage.createMessage({
        msgType: 'comm_open',
        channel: 'shell',
        username: kernel.username,
        session: kernel.clientId,
        subshellId: sid,
        content: {
          comm_id: comm.commId,
          target_name: HELLO_TARGET,
          data: helloData(this._visible),
          metadata: {}
        }
      } as any);
      kernel.sendShellMessage(open as any, false, true);
      this._helloOpen = true;
      return true;
    } catch {
      return false;
    }
  }

  /** The kernel's answer to the hello, and the runs it forwards (hello v2). */
  private _onHelloMsg(data: unknown): void {
    try {
      if (this.model.applyState(data)) {
        return;
      }
      const batched = this.model.applyRuns(data);
      if (batched) {
        for (const done of batched) {
          if (done.measurement && this._writeMetadata) {
            this._save(done);
          }
        }
        return;
      }
      const runId = forwardedRunId(data);
      if (!runId) {
        return;
      }
      const key = helloRunKey(runId);
      if ((data as { kind?: unknown }).kind === 'summary') {
        const done = this.model.commClose(key, data);
        if (done?.measurement && this._writeMetadata) {
          this._save(done);
        }
      } else {
        this.model.commMsg(key, data);
      }
    } catch (reason) {
      console.error("carbonlab: could not handle the kernel's answer", reason);
    }
  }

  private _closeHello(): void {
    const comm = this._hello;
    this._hello = null;
    if (comm && !comm.isDisposed) {
      try {
        comm.close();
      } catch {
        // The connection is gone: so is the comm, for the kernel too.
      }
    }
  }

  private _save(run: IRun): void {
    const cells = this.panel.content.model?.cells;
    if (!cells || !run.measurement) {
      return;
    }
    for (let i = 0; i < cells.length; i++) {
      const cell = cells.get(i);
      if (cell.id === run.cellId) {
        const saved: ISavedRun = {
          v: PROTOCOL_VERSION,
          run_id: run.runId,
          measurement: run.measurement,
          error: run.status === 'error'
        };
        cell.setMetadata(METADATA_KEY, saved as any);
        return;
      }
    }
  }

  /**
   * Finished runs saved by an earlier session come back as "saved" rows. Reading is always on
   * (it changes nothing in the file); writing is the `writeCellMetadata` setting.
   */
  private _restoreFromMetadata(): void {
    const cells = this.panel.content.model?.cells;
    if (!cells) {
      return;
    }
    for (let i = 0; i < cells.length; i++) {
      const cell = cells.get(i);
      const saved = cell.getMetadata(METADATA_KEY);
      if (saved !== undefined) {
        this.model.restore(cell.id, saved);
      }
    }
  }

  private _kernel: Kernel.IKernelConnection | null = null;
  private _hello: Kernel.IComm | null = null;
  private _helloOpen = false;
  private _visible: boolean;
  private _language: string | null = null;
  private _writeMetadata: boolean;
  private _timers = new Set<ReturnType<typeof setTimeout>>();
  private _isDisposed = false;
  private _stateChanged = new Signal<this, void>(this);
}

export namespace PanelCarbon {
  export interface IOptions {
    writeMetadata: boolean;
    /** Whether the carbonlab panel is showing now. */
    visible?: boolean;
  }
}

/**
 * One `PanelCarbon` per open notebook, and the one of the active notebook.
 */
export class CarbonTracker implements IDisposable {
  constructor(notebooks: INotebookTracker) {
    this._notebooks = notebooks;
    notebooks.widgetAdded.connect(this._onWidgetAdded, this);
    notebooks.currentChanged.connect(this._onCurrentChanged, this);
    notebooks.forEach(panel => this._add(panel));
    // NotebookActions' signals are global: route them to the panel of their notebook.
    NotebookActions.executionScheduled.connect(this._onScheduled, this);
    NotebookActions.executed.connect(this._onExecuted, this);
  }

  /** Emits when the active notebook changes. */
  get currentChanged(): ISignal<this, PanelCarbon | null> {
    return this._currentChanged;
  }

  /** carbonlab state of the active notebook, if any. */
  get current(): PanelCarbon | null {
    const panel = this._notebooks.currentWidget;
    // JupyterLab's tracker signals currentChanged before widgetAdded for a newly opened
    // notebook: add it here rather than answer "no notebook".
    return panel && !panel.isDisposed ? this._add(panel) : null;
  }

  /** Whether the carbonlab panel is showing (every notebook's kernel is told). */
  set visible(value: boolean) {
    this._visible = value;
    for (const p of this._panels.values()) {
      p.visible = value;
    }
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Whether finished runs are written into cell metadata (setting `writeCellMetadata`). */
  set writeMetadata(value: boolean) {
    this._writeMetadata = value;
    for (const p of this._panels.values()) {
      p.writeMetadata = value;
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    NotebookActions.executionScheduled.disconnect(this._onScheduled, this);
    NotebookActions.executed.disconnect(this._onExecuted, this);
    for (const p of this._panels.values()) {
      p.dispose();
    }
    this._panels.clear();
    Signal.clearData(this);
  }

  private _add(panel: NotebookPanel): PanelCarbon {
    let pc = this._panels.get(panel);
    if (!pc) {
      pc = new PanelCarbon(panel, {
        writeMetadata: this._writeMetadata,
        visible: this._visible
      });
      this._panels.set(panel, pc);
      panel.disposed.connect(() => {
        this._panels.get(panel)?.dispose();
        this._panels.delete(panel);
      });
    }
    return pc;
  }

  private _byNotebook(notebook: Notebook): PanelCarbon | null {
    for (const [panel, pc] of this._panels) {
      if (panel.content === notebook) {
        return pc;
      }
    }
    return null;
  }

  private _onWidgetAdded(_: INotebookTracker, panel: NotebookPanel): void {
    this._add(panel);
    if (panel === this._notebooks.currentWidget) {
      // currentChanged came first (before the panel was known): say it again now.
      this._currentChanged.emit(this.current);
    }
  }

  private _onCurrentChanged(): void {
    // `current` adds the panel first if widgetAdded has not come yet.
    this._currentChanged.emit(this.current);
  }

  private _onScheduled(
    _: unknown,
    args: { notebook: Notebook; cell: { model: { id: string } } }
  ): void {
    this._byNotebook(args.notebook)?.onScheduled(args.cell.model.id);
  }

  private _onExecuted(
    _: unknown,
    args: {
      notebook: Notebook;
      cell: { model: { id: string } };
      success: boolean;
    }
  ): void {
    this._byNotebook(args.notebook)?.onExecuted(
      args.cell.model.id,
      args.success
    );
  }

  private _notebooks: INotebookTracker;
  private _panels = new Map<NotebookPanel, PanelCarbon>();
  private _writeMetadata = false;
  private _visible = false;
  private _isDisposed = false;
  private _currentChanged = new Signal<this, PanelCarbon | null>(this);
}

/** The static text that replaces a live widget whose kernel went away mid-run. */
export function interruptedText(
  label: string,
  run: IRun | null,
  note: string
): string {
  const bits = ['carbonlab'];
  if (label) {
    bits.push(label);
  }
  bits.push(`interrupted (${note} mid-run)`);
  if (run) {
    const co2 = runCo2eG(run);
    const so = [
      formatEnergy(runEnergyJ(run)),
      co2 === null ? null : formatCo2(co2),
      formatDuration(runDurationS(run, Date.now()))
    ].filter(x => x !== null);
    bits.push(`up to then: ${so.join(' · ')}`);
  } else {
    bits.push('no final figure: see carbonlab.history()');
  }
  return bits.join(' · ');
}
