"""The KVM host agent and the agent protocol contract shared with the simulator."""
