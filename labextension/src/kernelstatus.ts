/**
 * Keep JupyterLab's kernel status true while a measured cell runs.
 *
 * JupyterLab 4.4+ sends comm messages over kernel subshells (`commsOverSubshells`, one subshell
 * per comm target by default). When a kernel opens a comm during a cell (carbonlab's run comm,
 * its live widget, any ipywidget), JupyterLab asks for a subshell on the control channel; the
 * kernel answers that request with its own busy/idle status messages, and JupyterLab takes every
 * status message as the kernel's state unless its parent's type is in the page config's
 * `untracked_message_types`. The subshell requests are not, so the kernel read "Idle" from about
 * 0.3 s into a cell that was still running. Subshell housekeeping says nothing about whether the
 * kernel is executing, so those parents are added to the untracked types.
 *
 * The same holds for comm messages once a kernel handles them on subshells (ipykernel 7 with
 * JupyterLab's default `commsOverSubshells`): the sidebar's hello, or a widget's message, is
 * answered by a subshell while the main shell still runs the cell, and that subshell's idle made
 * the kernel read "Idle". For such kernels the comm message types are untracked too; a kernel
 * without subshells handles comms on its main shell, where their busy/idle is the kernel's own,
 * and is left as it was.
 */
import { PageConfig } from '@jupyterlab/coreutils';

/** Message types whose status replies are housekeeping, not the kernel's execution state. */
export const SUBSHELL_REQUESTS = [
  'create_subshell_request',
  'delete_subshell_request',
  'list_subshell_request'
];

/** Comm messages: handled on a subshell, their status says nothing of the main shell. */
export const COMM_MESSAGES = ['comm_open', 'comm_msg', 'comm_close'];

/** Whether this kernel connection sends comm messages over subshells. */
export function commsOnSubshells(kernel: {
  supportsSubshells?: boolean;
  commsOverSubshells?: unknown;
}): boolean {
  return (
    kernel.supportsSubshells === true &&
    String(kernel.commsOverSubshells ?? 'disabled') !== 'disabled'
  );
}

/** The `untracked_message_types` option (JSON list) with `add` included once each. */
export function withUntracked(
  raw: string | undefined,
  add: string[] = SUBSHELL_REQUESTS
): string {
  let list: unknown = [];
  try {
    list = JSON.parse(raw || '[]');
  } catch {
    list = [];
  }
  const out = Array.isArray(list)
    ? list.filter((x): x is string => typeof x === 'string')
    : [];
  for (const t of add) {
    if (!out.includes(t)) {
      out.push(t);
    }
  }
  return JSON.stringify(out);
}

/** Apply it to this page's config (read by the kernel connection at each status message). */
export function untrackSubshellRequests(
  add: string[] = SUBSHELL_REQUESTS
): void {
  PageConfig.setOption(
    'untracked_message_types',
    withUntracked(PageConfig.getOption('untracked_message_types'), add)
  );
}

/** Once a kernel's info is known: untrack comm messages if it handles them on subshells. */
export function untrackCommsOnSubshells(kernel: {
  supportsSubshells?: boolean;
  commsOverSubshells?: unknown;
}): boolean {
  if (!commsOnSubshells(kernel)) {
    return false;
  }
  untrackSubshellRequests(COMM_MESSAGES);
  return true;
}
