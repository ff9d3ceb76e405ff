import {
  COMM_TARGET,
  HELLO_TARGET,
  helloData,
  PROTOCOL_VERSION
} from '../protocol';

describe('hello', () => {
  it('is a separate target the kernel listens on (carbonlab/jupyter/widget.py)', () => {
    expect(HELLO_TARGET).toBe('carbonlab.hello');
    expect(HELLO_TARGET).not.toBe(COMM_TARGET);
  });

  it('says a sidebar is there, with the protocol version', () => {
    expect(helloData()).toEqual({ v: PROTOCOL_VERSION, sidebar: true });
  });
});
