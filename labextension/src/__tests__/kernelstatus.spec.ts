import {
  COMM_MESSAGES,
  commsOnSubshells,
  SUBSHELL_REQUESTS,
  withUntracked
} from '../kernelstatus';

describe('withUntracked', () => {
  it("adds the subshell requests to the server's list, keeping its entries", () => {
    const out = JSON.parse(
      withUntracked('["comm_info_request","kernel_info_request"]')
    );
    expect(out).toEqual([
      'comm_info_request',
      'kernel_info_request',
      ...SUBSHELL_REQUESTS
    ]);
  });

  it('adds each once, however often it is applied', () => {
    const once = withUntracked('[]');
    expect(withUntracked(once)).toBe(once);
    expect(JSON.parse(once)).toEqual(SUBSHELL_REQUESTS);
  });

  it('survives a missing, malformed or non-list option', () => {
    for (const raw of [undefined, '', 'not json', '{"a": 1}', '[1, "x"]']) {
      const out = JSON.parse(withUntracked(raw));
      expect(out.slice(-SUBSHELL_REQUESTS.length)).toEqual(SUBSHELL_REQUESTS);
      expect(out.every((x: unknown) => typeof x === 'string')).toBe(true);
    }
  });
});

describe('commsOnSubshells', () => {
  it('is true only for a kernel with subshells and comms sent over them', () => {
    expect(
      commsOnSubshells({
        supportsSubshells: true,
        commsOverSubshells: 'perCommTarget'
      })
    ).toBe(true);
    expect(
      commsOnSubshells({
        supportsSubshells: true,
        commsOverSubshells: 'perComm'
      })
    ).toBe(true);
    expect(
      commsOnSubshells({
        supportsSubshells: true,
        commsOverSubshells: 'disabled'
      })
    ).toBe(false);
    expect(
      commsOnSubshells({
        supportsSubshells: false,
        commsOverSubshells: 'perCommTarget'
      })
    ).toBe(false);
    expect(commsOnSubshells({})).toBe(false);
  });
});

describe('COMM_MESSAGES', () => {
  it('names the three comm message types', () => {
    expect(JSON.parse(withUntracked('[]', COMM_MESSAGES))).toEqual([
      'comm_open',
      'comm_msg',
      'comm_close'
    ]);
  });
});
