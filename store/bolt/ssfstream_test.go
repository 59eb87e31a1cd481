package bolt_test

import (
	"testing"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/storetest"
)

func TestSSFStreams(t *testing.T) {
	storetest.TestSSFStreams(t, func(t *testing.T) store.SSFStreamStore { return openTemp(t).SSFStreams() })
}
