"""MiniGrid DoorKey with RGB image observations, and a BFS expert for it.

The observation is the fully observed grid rendered as an RGB image (uint8,
HWC, ``tile_size`` pixels per cell: 40x40x3 for the 5x5 grid at 8 px), with
MiniGrid's ``mission`` string dropped: Minari cannot serialise MissionSpace,
and DoorKey's mission never changes. The full view keeps the task Markov, so
a short context suffices; the agent's heading is drawn as a triangle.

``max_steps`` is 100 instead of MiniGrid's 250 (= 10 * size**2): a noisy
expert's failures then cost 100 frames, not 250, and every success still fits
easily (the expert needs ~10-20 steps). MiniGrid's reward is
``1 - 0.9 * steps / max_steps`` on reaching the goal, else 0, so success is
``return > 0``.

Stands alone: imports gymnasium, numpy and minigrid only.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym

__all__ = ["DoorKeyExpert", "make_doorkey_rgb"]

# MiniGrid's action indices (minigrid.core.actions.Actions).
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)
# MiniGrid's DIR_TO_VEC: 0 east, 1 south, 2 west, 3 north.
_DIR_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))


def make_doorkey_rgb(size: int = 5, tile_size: int = 8, max_steps: int = 100, render_mode: str | None = None) -> gym.Env:
    """DoorKey-``size``x``size`` with a full-view RGB image as the only observation."""
    from minigrid.envs import DoorKeyEnv
    from minigrid.wrappers import ImgObsWrapper, RGBImgObsWrapper

    env = DoorKeyEnv(size=size, max_steps=max_steps, render_mode=render_mode)
    return ImgObsWrapper(RGBImgObsWrapper(env, tile_size=tile_size))


class DoorKeyExpert:
    """Shortest-path expert for DoorKey: fetch the key, open the door, walk to the goal.

    Reads the grid from ``env.unwrapped`` (privileged state: this is a data
    generator, not a learner) and re-plans every step with a breadth-first
    search over (x, y, heading), so it recovers from any random action injected
    between its own (a dropped key, a closed door, a wrong turn).

    Example:
        >>> env = make_doorkey_rgb(); obs, info = env.reset(seed=0)
        >>> expert = DoorKeyExpert(env); expert.reset(obs, info)
        >>> env.step(expert.act(obs, info))[0].shape
        (40, 40, 3)
    """

    def __init__(self, env: gym.Env) -> None:
        self.env = env

    def reset(self, obs: Any, info: dict[str, Any]) -> None:
        """Nothing to remember: the plan is recomputed from the grid every step."""

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        world = self.env.unwrapped
        grid, carrying = world.grid, world.carrying
        key = door = goal = None
        for x in range(grid.width):
            for y in range(grid.height):
                cell = grid.get(x, y)
                if cell is None:
                    continue
                if cell.type == "key":
                    key = (x, y)
                elif cell.type == "door":
                    door = (x, y, cell)
                elif cell.type == "goal":
                    goal = (x, y)
        if door is not None and not door[2].is_open:
            if carrying is None or carrying.type != "key":
                if key is None:  # cannot happen in DoorKey; do nothing useful rather than crash
                    return DONE
                return self._toward(world, key, PICKUP)
            return self._toward(world, door[:2], TOGGLE)
        return self._toward(world, goal, None) if goal is not None else DONE

    def _toward(self, world: Any, target: tuple[int, int], interact: int | None) -> int:
        """First action of a shortest path to face ``target`` (then ``interact``), or to stand on it."""
        start = (int(world.agent_pos[0]), int(world.agent_pos[1]), int(world.agent_dir))
        grid = world.grid

        def passable(x: int, y: int) -> bool:
            if (x, y) == target and interact is None:
                return True
            cell = grid.get(x, y)
            return cell is None or cell.can_overlap()

        def done(state: tuple[int, int, int]) -> bool:
            x, y, d = state
            if interact is None:
                return (x, y) == target
            dx, dy = _DIR_VEC[d]
            return (x + dx, y + dy) == target

        if done(start):
            return interact if interact is not None else DONE
        first: dict[tuple[int, int, int], int] = {start: -1}
        queue = deque([start])
        while queue:
            state = queue.popleft()
            x, y, d = state
            dx, dy = _DIR_VEC[d]
            moves = [(LEFT, (x, y, (d - 1) % 4)), (RIGHT, (x, y, (d + 1) % 4))]
            if 0 <= x + dx < grid.width and 0 <= y + dy < grid.height and passable(x + dx, y + dy):
                moves.append((FORWARD, (x + dx, y + dy, d)))
            for action, nxt in moves:
                if nxt in first:
                    continue
                first[nxt] = action if state == start else first[state]
                if done(nxt):
                    return first[nxt]
                queue.append(nxt)
        return DONE  # unreachable target: idle (the episode times out as a failure)
