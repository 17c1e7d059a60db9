package lora

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vklora/vklora/vk/vktest"
)

func TestMain(m *testing.M) { vktest.Main(m) }

// fixture binds the shared vktest helpers to one test, its device and engine.
type fixture struct {
	vktest.Fixture
	eng *Engine
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, Options{}) }

// newFixtureWith is newFixture with an engine of options opt.
func newFixtureWith(t *testing.T, opt Options) *fixture {
	f := &fixture{Fixture: vktest.NewFixture(t)}
	var err error
	f.eng, err = NewEngine(f.Dev, opt)
	require.NoError(t, err)
	return f
}

// in rebinds the fixture to a subtest (vktest.Fixture.In).
func (f *fixture) in(t *testing.T) *fixture {
	g := *f
	g.Fixture = f.Fixture.In(t)
	return &g
}

// inOwn is in with a generator seeded from the subtest's name
// (vktest.Fixture.InOwn).
func (f *fixture) inOwn(t *testing.T) *fixture {
	g := *f
	g.Fixture = f.Fixture.InOwn(t)
	return &g
}
